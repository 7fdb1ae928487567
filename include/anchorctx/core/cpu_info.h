// What CPU this is, from CPUID: kernels behave differently on AMD Zen 4, Zen 5 and Intel parts
// with the same instruction sets, so every benchmark result carries it (`bench attention`,
// `bench train`: the `cpu` object of their JSON and a line of their table); and the one place
// the bf16 features are read (the native attention kernels and the bf16 GEMMs ask here).
#pragma once

#include <cstdint>
#include <string>

namespace anchorctx::core {

struct CpuInfo {
  std::string vendor;  // "AuthenticAMD", "GenuineIntel", ...; empty off x86
  std::string brand;   // the brand string, e.g. "AMD EPYC 9R14 96-Core Processor"
  int family = 0;      // display family (base + extended), e.g. 25 (0x19) for Zen 3/4
  int model = 0;       // display model (extended model bits included), e.g. 17
  int stepping = 0;
  bool avx512_bf16 = false;  // the CPU has it and the OS saves its registers
  bool amx_bf16 = false;     // AMX-BF16 and AMX-TILE reported (whether Linux grants the tile
                             // state to this process is the attention kernels' check)
};

// This machine's CPU, read once.
const CpuInfo& cpu_info();

// One line for a benchmark's table: "AMD EPYC ... (AuthenticAMD family 25 model 17 stepping 1;
// AVX512_BF16, no AMX)".
std::string describe(const CpuInfo& cpu);

// This machine's physical memory in bytes (sysconf), 0 when unknown: the bound of what one
// process can hold (plan's cpu-local profile, train's step check, the out-of-memory message).
std::int64_t physical_memory_bytes();

}  // namespace anchorctx::core
