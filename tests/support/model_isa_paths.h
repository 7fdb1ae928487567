// Runs a test body once per instruction set this CPU has (ANCHORCTX_ISA = portable, avx2,
// avx512), each under a SCOPED_TRACE naming it: the paths of the model part's vector loops
// (vector_math.cpp: AVX-512 or plain; decode_kernels.cpp: AVX-512, AVX2 or plain).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "anchorctx/core/isa.h"
#include "support/env_override.h"

namespace anchorctx::test {

template <class Body>
void for_each_model_isa_path(Body body) {
  std::vector<std::string> paths{"portable"};
  if (core::best_cpu_isa() >= core::Isa::avx2) paths.emplace_back("avx2");
  if (core::best_cpu_isa() >= core::Isa::avx512) paths.emplace_back("avx512");
  for (const std::string& isa : paths) {
    const EnvOverride guard("ANCHORCTX_ISA", isa);
    SCOPED_TRACE("ANCHORCTX_ISA=" + isa);
    body();
  }
}

}  // namespace anchorctx::test
