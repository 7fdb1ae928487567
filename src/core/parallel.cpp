#include "anchorctx/core/parallel.h"

#include <omp.h>

#include "anchorctx/core/error.h"

namespace anchorctx::core {

void check_threads(int requested, std::string_view what) {
  require(requested >= 0 && requested <= kMaxThreads, "{} {} is out of range: 0 (all) to {}", what,
          requested, kMaxThreads);
}

int resolve_threads(int requested) {
  check_threads(requested, "threads");
  if (requested > 0) return requested;
  const int available = omp_get_max_threads();
  return available > 0 ? available : 1;
}

}  // namespace anchorctx::core
