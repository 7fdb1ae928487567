#include "cli/bf16_compute_option.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "anchorctx/attention/kernels.h"

namespace anchorctx::cli {
namespace {

// `--bf16-compute VALUE` checked against what this CPU offers (`why`: the reason it lacks native).
model::Bf16Compute parse_requested(const std::string& requested, bool available,
                                   const std::string& why) {
  const auto parsed = model::parse_bf16_compute(requested);
  if (!parsed) throw CLI::ValidationError("--bf16-compute", "expected native or emulated");
  if (*parsed == model::Bf16Compute::native && !available)
    throw CLI::ValidationError("--bf16-compute",
                               fmt::format("native is unavailable here: {}", why));
  return *parsed;
}

// What the native bf16 attention kernels run on here: "amx_bf16" or "avx512_bf16".
std::string native_attention_kernels() {
  attention::KernelOptions native;
  native.native_bf16 = true;
  return attention::kernel_isa(core::DType::bf16, native);
}

}  // namespace

model::Bf16Compute resolve_bf16_compute(const std::string& requested, model::Precision precision,
                                        bool quiet) {
  std::string why;
  const bool available = model::native_bf16_available(&why);
  model::Bf16Compute compute = model::default_bf16_compute();
  if (!requested.empty()) compute = parse_requested(requested, available, why);
  if (!quiet && precision == model::Precision::bf16)
    std::fprintf(stderr, "anchorctx: bf16 GEMMs and attention %s%s\n",
                 std::string(model::to_string(compute)).c_str(),
                 compute == model::Bf16Compute::native
                     ? fmt::format(" (GEMMs through oneDNN, attention on the {} kernels)",
                                   native_attention_kernels())
                           .c_str()
                     : (available ? "" : fmt::format(" (native unavailable: {})", why).c_str()));
  return compute;
}

model::Bf16Compute resolve_attention_bf16_compute(const std::string& requested, bool bf16_tensors) {
  std::string why;
  const bool available = attention::native_bf16_available(&why);
  model::Bf16Compute compute =
      available ? model::Bf16Compute::native : model::Bf16Compute::emulated;
  if (!requested.empty()) compute = parse_requested(requested, available, why);
  if (bf16_tensors) {
    std::fprintf(stderr, "anchorctx: bf16 attention products %s%s\n",
                 std::string(model::to_string(compute)).c_str(),
                 compute == model::Bf16Compute::native
                     ? fmt::format(" ({} kernels)", native_attention_kernels()).c_str()
                     : (available ? "" : fmt::format(" (native unavailable: {})", why).c_str()));
  }
  return compute;
}

}  // namespace anchorctx::cli
