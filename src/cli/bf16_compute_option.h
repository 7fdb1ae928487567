// The --bf16-compute option of `train` and `bench train` (model/bf16_compute.h).
#pragma once

#include <string>

#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/llama_train.h"

namespace anchorctx::cli {

inline constexpr const char* kBf16ComputeHelp =
    "bf16 precision: how the GEMMs of the projections, MLP and LM head and the attention "
    "kernels run: native (bf16 operands on AVX512_BF16 with float32 accumulation: oneDNN for "
    "the GEMMs, the native bf16 attention kernels, both on AMX where the CPU has it) or "
    "emulated (float32 products on bf16 values, the reference). Default: native where oneDNN "
    "is built in and the CPU has AVX512_BF16, else emulated";

// For the commands with a --precision (train, bench train, eval).
inline const std::string kBf16ComputeHelpWithPrecision =
    std::string(kBf16ComputeHelp) + ". No effect with --precision fp32";

// The value of --bf16-compute ("" for the default). Prints the choice to stderr unless quiet
// (for bf16 precision). Throws CLI::ValidationError for an unknown name, and for native where it
// is unavailable (saying why).
model::Bf16Compute resolve_bf16_compute(const std::string& requested, model::Precision precision,
                                        bool quiet);

inline constexpr const char* kAttentionBf16ComputeHelp =
    "--dtype bf16: how the attention kernels multiply: native (bf16 operands with float32 "
    "accumulation, P and dS rounded to bf16 as FlashAttention-2 does; on AMX tiles where the CPU "
    "has AMX-BF16 unless ANCHORCTX_AMX=off, else AVX512_BF16 `vdpbf16ps`) or "
    "emulated (float32 products on the bf16 values, the reference). Default: native where the "
    "CPU has AVX512_BF16 (and ANCHORCTX_ISA does not lower the kernels below avx512), else "
    "emulated. No effect with --dtype fp32";

// The same option for `bench attention`, whose native path is the attention kernels' own
// (attention::native_bf16_available: no oneDNN needed). Prints the choice to stderr for bf16
// tensors. Throws CLI::ValidationError as resolve_bf16_compute does.
model::Bf16Compute resolve_attention_bf16_compute(const std::string& requested, bool bf16_tensors);

}  // namespace anchorctx::cli
