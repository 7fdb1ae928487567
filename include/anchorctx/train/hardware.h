// Hardware profiles for the cost model (train/cost_model.h): what one device computes and how
// fast its links move bytes. A profile is a handful of numbers, each with where it comes from;
// the GPU ones are datasheet peaks times efficiencies we assume (stated in `source`), the
// `cpu-local` one is measured on this machine when asked for.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/llama_train.h"

namespace anchorctx::train {

struct HardwareProfile {
  std::string name;
  std::string description;            // the machine in words
  double peak_tflops_bf16 = 0.0;      // dense matrix-product peak of one device, bf16 operands
  double peak_tflops_fp32 = 0.0;      // the same in float32 (no TF32)
  double gemm_efficiency = 0.0;       // fraction of peak the layers' GEMMs reach (assumed)
  double attention_efficiency = 0.0;  // fraction of peak the attention kernels reach (assumed)
  std::int64_t memory_bytes = 0;      // of one device
  double memory_gbs = 0.0;            // device memory bandwidth, GB/s (optimizer step)
  int devices_per_node = 1;
  double intra_node_gbs = 0.0;  // effective GB/s one device sends to peers in its node
  double inter_node_gbs = 0.0;  // effective GB/s one device sends to other nodes
  int attention_tile = 64;      // square tile of the attention kernels (BlockPlan tile_size)
  std::string source;           // where the numbers come from

  double peak_tflops(model::Precision precision) const {
    return precision == model::Precision::bf16 ? peak_tflops_bf16 : peak_tflops_fp32;
  }
};

// The names hardware_profile() takes: the built-in table, then "cpu-local".
std::vector<std::string> hardware_profile_names();

// A profile by name. "cpu-local" measures this machine (an sgemm 2048^3 on `threads` threads,
// 0: all; with bf16_compute native, oneDNN's bf16 GEMM 2048^3 as the bf16 peak, else sgemm;
// a 256 MiB memory copy) and takes about a second. Throws anchorctx::Error naming the unknown
// name and listing the known ones.
HardwareProfile hardware_profile(std::string_view name, int threads = 0,
                                 model::Bf16Compute bf16_compute = model::Bf16Compute::emulated);

}  // namespace anchorctx::train
