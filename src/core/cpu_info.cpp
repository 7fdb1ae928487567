#include "anchorctx/core/cpu_info.h"

#include <unistd.h>

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace anchorctx::core {
namespace {

// Leading and trailing spaces removed (Intel pads the brand string on the left).
std::string trimmed(const char* s) {
  std::string out(s);
  const std::size_t first = out.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  out.erase(0, first);
  out.erase(out.find_last_not_of(' ') + 1);
  return out;
}

CpuInfo read_cpu_info() {
  CpuInfo info;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return info;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  info.vendor = vendor;

  if (__get_cpuid(1, &a, &b, &c, &d) != 0) {
    // Intel SDM / AMD APM: the extended family is added only to base family 0xF, the extended
    // model prepended for base families 0x6 and 0xF.
    const int base_family = static_cast<int>((a >> 8) & 0xF);
    const int base_model = static_cast<int>((a >> 4) & 0xF);
    info.stepping = static_cast<int>(a & 0xF);
    info.family =
        base_family == 0xF ? base_family + static_cast<int>((a >> 20) & 0xFF) : base_family;
    info.model = base_family == 0x6 || base_family == 0xF
                     ? base_model | static_cast<int>(((a >> 16) & 0xF) << 4)
                     : base_model;
  }
  // libgcc's check: the CPUID bit and the OS saving the AVX-512 state (XCR0).
  __builtin_cpu_init();
  info.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24;  // CPUID.(7,0):EDX
  if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0)
    info.amx_bf16 = (d & kAmxBf16) != 0 && (d & kAmxTile) != 0;

  if (__get_cpuid(0x80000000, &a, &b, &c, &d) != 0 && a >= 0x80000004) {
    char brand[49] = {};
    for (unsigned leaf = 0; leaf < 3; ++leaf) {
      __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
      const unsigned words[4] = {a, b, c, d};
      std::memcpy(brand + 16 * leaf, words, 16);
    }
    info.brand = trimmed(brand);
  }
#endif
  return info;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = read_cpu_info();
  return info;
}

std::string describe(const CpuInfo& cpu) {
  if (cpu.vendor.empty()) return "unknown CPU (no CPUID)";
  std::string out = cpu.brand.empty() ? cpu.vendor : cpu.brand;
  out += " (" + cpu.vendor + " family " + std::to_string(cpu.family) + " model " +
         std::to_string(cpu.model) + " stepping " + std::to_string(cpu.stepping) + "; ";
  out += cpu.avx512_bf16 ? "AVX512_BF16" : "no AVX512_BF16";
  out += cpu.amx_bf16 ? ", AMX-BF16)" : ", no AMX)";
  return out;
}

std::int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<std::int64_t>(pages) * page : 0;
}

}  // namespace anchorctx::core
