// Bytes the program holds through operator new, counted exactly (the size each call asked for):
// for tests that compare a memory estimate with what a call really keeps allocated. The
// replacement operators live in allocation_counter.cpp and serve the whole test executable.
#pragma once

#include <cstdint>

namespace anchorctx::test {

// Bytes allocated through operator new (any form but the over-aligned one) and not yet deleted,
// by every thread.
std::int64_t live_new_bytes();

}  // namespace anchorctx::test
