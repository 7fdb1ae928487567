// Thread-count policy shared by every kernel: 0 means "all the threads OpenMP would use".
#pragma once

namespace anchorctx::core {

// The number of threads a kernel should run with, given a request (0 = default).
int resolve_threads(int requested);

}  // namespace anchorctx::core
