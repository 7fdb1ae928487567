// Thread-count policy shared by every kernel: 0 means "all the threads OpenMP would use".
#pragma once

#include <string_view>

namespace anchorctx::core {

// The most threads a request may name. Above the hardware threads of the largest machines
// today (8-socket servers have under 2000), and low enough for OpenMP to create them: libgomp
// ends the process when a team of INT32_MAX threads does not fit in memory, and crashes at
// 50 million. A larger request is refused by name (never clamped: it is a mistake, not a wish).
inline constexpr int kMaxThreads = 4096;

// Throws anchorctx::Error naming `what` (the option or field that carried the request) unless
// 0 <= requested <= kMaxThreads.
void check_threads(int requested, std::string_view what);

// The number of threads a kernel should run with, given a request (0 = default); a request out
// of check_threads' range throws.
int resolve_threads(int requested);

}  // namespace anchorctx::core
