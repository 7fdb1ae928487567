// core::set_default_threads: the --threads of every command, for everything run after it.
#include <gtest/gtest.h>
#include <omp.h>

#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"

extern "C" int openblas_get_num_threads(void);

namespace anchorctx::core {
namespace {

TEST(DefaultThreads, SetsOpenMpAndOpenBlasAndZeroKeepsThem) {
  const int omp_before = omp_get_max_threads();
  const int blas_before = openblas_get_num_threads();
  set_default_threads(3);
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(openblas_get_num_threads(), 3);
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  EXPECT_EQ(team, 3);  // a parallel region that names no count (the layers' loops) follows it
  set_default_threads(0);
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_THROW(set_default_threads(-1), Error);
  EXPECT_THROW(set_default_threads(kMaxThreads + 1), Error);
  set_default_threads(omp_before);
  set_default_threads(blas_before > 0 ? blas_before : omp_before);
  omp_set_num_threads(omp_before);
}

}  // namespace
}  // namespace anchorctx::core
