// A yardstick for kernel speed: what the linked BLAS (OpenBLAS) reaches on a plain float32
// matrix product on this machine, with a given thread count. Attention benchmarks report their
// throughput as a fraction of it, which carries across machines better than raw GFLOP/s.
#pragma once

#include "anchorctx/core/timing.h"

namespace anchorctx::core {

// GFLOP/s (2 n^3 flops per product) of cblas_sgemm on n x n matrices with `threads` BLAS
// threads (0: core::resolve_threads(0)): untimed runs for `warm_up_ms` (at least one,
// core::warm_up), then the median of `repeat` runs. The BLAS thread count in force before the
// call is restored after it. Throws anchorctx::Error on n < 1 or repeat < 1.
double measure_sgemm_gflops(int n, int threads, int repeat = 3, double warm_up_ms = kWarmUpMs);

// Sets the thread count of everything run after it on this thread: OpenMP's default team size
// (which the attention kernels, the layers' loops, oneDNN and the OpenMP build of OpenBLAS
// follow) and OpenBLAS's own (its pthread build). 0 leaves both as they are (every core, or
// OMP_NUM_THREADS). Throws anchorctx::Error outside check_threads' range.
void set_default_threads(int threads);

// The name and version of the linked BLAS, e.g. "OpenBLAS 0.3.21 ...".
const char* blas_name();

}  // namespace anchorctx::core
