#include "anchorctx/core/blas.h"

#include <cblas.h>
#include <omp.h>

#include <cstddef>
#include <random>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/timing.h"

// OpenBLAS extensions. Declared here as well as in OpenBLAS's cblas.h because the system's
// cblas.h may be another vendor's header (Debian's alternatives) while the build links
// OpenBLAS (BLA_VENDOR=OpenBLAS); identical redeclarations are harmless.
extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}

namespace anchorctx::core {

double measure_sgemm_gflops(int n, int threads, int repeat, double warm_up_ms) {
  require(n >= 1, "sgemm probe: size {} must be at least 1", n);
  require(repeat >= 1, "sgemm probe: repeat {} must be at least 1", repeat);
  const std::size_t elems = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  std::vector<float> a(elems), b(elems), c(elems, 0.0f);
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a)
    x = dist(rng);
  for (auto& x : b)
    x = dist(rng);

  const int previous = openblas_get_num_threads();
  openblas_set_num_threads(resolve_threads(threads));
  const auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };
  warm_up(warm_up_ms, run);  // thread pool start, page faults, caches, clocks
  const std::vector<double> ms = time_runs_ms(repeat, run);
  openblas_set_num_threads(previous);

  const double flops = 2.0 * static_cast<double>(n) * n * n;
  return flops / (median(ms) * 1e-3) * 1e-9;
}

void set_default_threads(int threads) {
  check_threads(threads, "threads");
  if (threads == 0) return;
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

const char* blas_name() {
  const char* config = openblas_get_config();
  return config != nullptr ? config : "OpenBLAS";
}

}  // namespace anchorctx::core
