// Runs a test body once per path of the model part's vector loops (vector_math.cpp,
// decode_kernels.cpp): AVX-512 where this CPU has it, and the plain loops, which those files run
// below AVX-512 (ANCHORCTX_ISA=avx2), each under a SCOPED_TRACE naming it.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "anchorctx/core/isa.h"
#include "support/env_override.h"

namespace anchorctx::test {

template <class Body>
void for_each_model_isa_path(Body body) {
  std::vector<std::string> paths{"avx2"};
  if (core::best_cpu_isa() >= core::Isa::avx512) paths.emplace_back("avx512");
  for (const std::string& isa : paths) {
    const EnvOverride guard("ANCHORCTX_ISA", isa);
    SCOPED_TRACE("ANCHORCTX_ISA=" + isa);
    body();
  }
}

}  // namespace anchorctx::test
