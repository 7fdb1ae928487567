// The x86 instruction set a hand-vectorised kernel runs with: the best this CPU supports,
// lowered on request by the environment variable ANCHORCTX_ISA (portable / avx2 / avx512), so
// tests and benchmarks can compare the paths in one process. Every part that compiles a kernel
// several times (attention, rope, the optimizer) picks its path here.
#pragma once

namespace anchorctx::core {

// Ordered: a lower value runs on more CPUs.
enum class Isa { portable, avx2, avx512 };

// avx512: AVX-512 F, DQ, VL and BW (what the kernels are compiled for); avx2: AVX2 and FMA.
Isa best_cpu_isa();

// best_cpu_isa(), lowered by ANCHORCTX_ISA when set (it never raises it). Read on every call.
Isa selected_isa();

// "portable", "avx2", "avx512".
const char* isa_name(Isa isa);

}  // namespace anchorctx::core
