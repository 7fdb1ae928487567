#include "anchorctx/core/parallel.h"

#include <omp.h>

namespace anchorctx::core {

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const int available = omp_get_max_threads();
  return available > 0 ? available : 1;
}

}  // namespace anchorctx::core
