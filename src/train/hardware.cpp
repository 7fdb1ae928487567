// The hardware table of the cost model. GPU numbers: datasheet peaks (dense, no sparsity) and
// link rates, times efficiencies that are assumptions, not measurements (docs/DISTRIBUTED_PLAN.md
// says how sensitive the predictions are to them).
#include "anchorctx/train/hardware.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/core/blas.h"
#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/model/bf16_compute.h"

namespace anchorctx::train {

namespace {

constexpr std::int64_t kGiB = std::int64_t{1} << 30;

// Nominal link rates are scaled by this to an achievable rate (NCCL's bus bandwidth on such
// systems is commonly reported near 80% of the nominal rate; an assumption here).
constexpr double kLinkEfficiency = 0.8;

std::vector<HardwareProfile> builtin_profiles() {
  std::vector<HardwareProfile> table;
  // DGX A100 class: 8 x A100-SXM4-80GB per node on NVSwitch (NVLink 3: 600 GB/s both
  // directions, 300 per direction), one 200 Gb/s HDR InfiniBand port per GPU between nodes.
  table.push_back({"a100-nvlink",
                   "A100-SXM4-80GB, 8 per node on NVLink 3 / NVSwitch, HDR InfiniBand 200 Gb/s "
                   "per GPU between nodes",
                   312.0, 19.5, 0.70, 0.50, 80 * kGiB, 2039.0, 8, 300.0 * kLinkEfficiency,
                   25.0 * kLinkEfficiency, 128,
                   "datasheet: 312 TFLOP/s bf16 dense, 19.5 fp32, 2039 GB/s HBM2e; NVLink 3 "
                   "300 GB/s per direction, HDR 25 GB/s per GPU; links x 0.8; GEMM efficiency "
                   "0.70 and attention 0.50 (FlashAttention-2 tiles of 128) assumed"});
  // DGX H100 class: NVLink 4 (900 GB/s both directions), one 400 Gb/s NDR port per GPU.
  table.push_back({"h100-nvlink",
                   "H100-SXM5-80GB, 8 per node on NVLink 4 / NVSwitch, NDR InfiniBand 400 Gb/s "
                   "per GPU between nodes",
                   989.0, 67.0, 0.60, 0.45, 80 * kGiB, 3350.0, 8, 450.0 * kLinkEfficiency,
                   50.0 * kLinkEfficiency, 128,
                   "datasheet: 989 TFLOP/s bf16 dense, 67 fp32, 3350 GB/s HBM3; NVLink 4 450 "
                   "GB/s per direction, NDR 50 GB/s per GPU; links x 0.8; GEMM efficiency 0.60 "
                   "and attention 0.45 assumed"});
  // H200: H100's compute with 141 GB of HBM3e at 4.8 TB/s.
  table.push_back({"h200-nvlink",
                   "H200-SXM-141GB, 8 per node on NVLink 4 / NVSwitch, NDR InfiniBand 400 Gb/s "
                   "per GPU between nodes",
                   989.0, 67.0, 0.60, 0.45, std::int64_t{141'000'000'000}, 4800.0, 8,
                   450.0 * kLinkEfficiency, 50.0 * kLinkEfficiency, 128,
                   "datasheet: 989 TFLOP/s bf16 dense, 67 fp32, 141 GB HBM3e at 4800 GB/s; links "
                   "as h100-nvlink; efficiencies as h100-nvlink (assumed)"});
  return table;
}

// GB/s of a large memcpy (bytes read + bytes written), the best of three.
double measure_copy_gbs() {
  const std::size_t n = std::size_t{256} << 20;
  std::vector<char> a(n, 1), b(n, 0);
  double best_ms = 1e30;
  for (int r = 0; r < 3; ++r) {
    const core::Stopwatch watch;
    std::memcpy(b.data(), a.data(), n);
    best_ms = std::min(best_ms, watch.elapsed_ms());
    a[static_cast<std::size_t>(r)] = b[n - 1 - static_cast<std::size_t>(r)];  // keep both alive
  }
  return 2.0 * static_cast<double>(n) / (best_ms * 1e-3) / 1e9;
}

// This machine, measured now: one "device" = one process on `threads` threads. The layer GEMMs
// run on OpenBLAS sgemm in fp32, and in bf16 as `bf16_compute` says: native, oneDNN's bf16
// matmul (the bf16 peak is then its 2048^3 yardstick, about 2x sgemm on AVX512_BF16), or
// emulated, sgemm on bf16 values (the bf16 peak is the sgemm rate). The attention kernels run
// at 62-78% of the matching yardstick (docs/PERFORMANCE.md, bench attention), 0.65 taken.
// Processes on one machine exchange through shared memory: half the copy rate each way.
HardwareProfile cpu_local(int threads, model::Bf16Compute bf16_compute) {
  const int t = core::resolve_threads(threads);
  const double sgemm_tflops = core::measure_sgemm_gflops(2048, t, 3) / 1e3;
  const bool native = bf16_compute == model::Bf16Compute::native;
  const double bf16_tflops =
      native ? model::measure_bf16_gemm_gflops(2048, t, 3) / 1e3 : sgemm_tflops;
  const double copy_gbs = measure_copy_gbs();
  HardwareProfile p{
      "cpu-local",
      fmt::format("this machine: one process on {} thread(s), processes on one node", t),
      bf16_tflops,
      sgemm_tflops,
      1.0,
      0.65,
      core::physical_memory_bytes(),
      copy_gbs,
      1 << 20,  // every rank on this one node
      copy_gbs / 2,
      copy_gbs / 2,
      64,
      fmt::format("measured now: sgemm 2048^3 {:.1f} GFLOP/s, bf16 {}, memcpy {:.1f} GB/s "
                  "(read + write); attention efficiency 0.65 of the GEMM rate from "
                  "docs/PERFORMANCE.md",
                  sgemm_tflops * 1e3,
                  native ? fmt::format("GEMM (oneDNN, --bf16-compute native) {:.1f} GFLOP/s",
                                       bf16_tflops * 1e3)
                         : std::string("emulated on sgemm"),
                  copy_gbs)};
  return p;
}

}  // namespace

std::vector<std::string> hardware_profile_names() {
  std::vector<std::string> names;
  for (const HardwareProfile& p : builtin_profiles())
    names.push_back(p.name);
  names.emplace_back("cpu-local");
  return names;
}

HardwareProfile hardware_profile(std::string_view name, int threads,
                                 model::Bf16Compute bf16_compute) {
  if (name == "cpu-local") return cpu_local(threads, bf16_compute);
  for (HardwareProfile& p : builtin_profiles())
    if (p.name == name) return p;
  fail("unknown hardware profile '{}' (known: {})", name,
       fmt::join(hardware_profile_names(), ", "));
}

}  // namespace anchorctx::train
