// How the GEMMs of the training layers run in bf16 precision (docs/PRECISION.md):
//   emulated  float32 sgemm on bf16-valued float32 operands (exact products, float32 sums): the
//             reference the transformers-parity tests pin.
//   native    bf16 operands into oneDNN's matmul (AVX512_BF16 `vdpbf16ps`, float32
//             accumulation and float32 output), rounded afterwards where emulated rounds. The
//             products are the same; the order of the float32 sums differs.
// Native needs oneDNN built in (ANCHORCTX_HAVE_DNNL) and a CPU with AVX512_BF16, not lowered
// below avx512 by ANCHORCTX_ISA.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "anchorctx/core/enum_names.h"
#include "anchorctx/core/timing.h"

namespace anchorctx::model {

enum class Bf16Compute { emulated, native };
inline constexpr core::EnumName<Bf16Compute> kBf16ComputeNames[] = {
    {Bf16Compute::emulated, "emulated"}, {Bf16Compute::native, "native"}};
constexpr std::span<const core::EnumName<Bf16Compute>> enum_names(Bf16Compute) {
  return kBf16ComputeNames;
}

constexpr std::string_view to_string(Bf16Compute compute) {
  return core::enum_name(compute);
}
constexpr std::optional<Bf16Compute> parse_bf16_compute(std::string_view name) {
  return core::parse_enum<Bf16Compute>(name);
}

// Whether the native path can run here; when not, why_not (if non-null) says why.
bool native_bf16_available(std::string* why_not = nullptr);
// native where available, else emulated.
Bf16Compute default_bf16_compute();

// The bf16 GEMM yardstick: GFLOP/s of an n^3 bf16 x bf16 -> float32 matmul through oneDNN on
// `threads` threads (the median of `repeat` runs after `warm_up_ms` of untimed ones, at least
// one: core::warm_up); 0 when the native path is unavailable.
double measure_bf16_gemm_gflops(int n, int threads, int repeat,
                                double warm_up_ms = core::kWarmUpMs);

}  // namespace anchorctx::model
