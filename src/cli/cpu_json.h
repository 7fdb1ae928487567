// The `cpu` object both benchmarks put in their JSON (core/cpu_info.h).
#pragma once

#include <nlohmann/json.hpp>

#include "anchorctx/core/cpu_info.h"

namespace anchorctx::cli {

inline nlohmann::json cpu_json(const core::CpuInfo& cpu) {
  return {{"vendor", cpu.vendor},    {"brand", cpu.brand},       {"family", cpu.family},
          {"model", cpu.model},      {"stepping", cpu.stepping}, {"avx512_bf16", cpu.avx512_bf16},
          {"amx_bf16", cpu.amx_bf16}};
}

}  // namespace anchorctx::cli
