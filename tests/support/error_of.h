// The message of the anchorctx::Error a call throws: for tests that check what an error says.
#pragma once

#include <string>

#include "anchorctx/core/error.h"

namespace anchorctx::test {

// The message of the anchorctx::Error `fn` throws ("" when it throws none; any other exception
// propagates and fails the test).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace anchorctx::test
