// The --threads option of every subcommand: 0 (all) to core::kMaxThreads, the one limit
// (core/parallel.h); a count outside it is a usage error naming the option, before any work,
// rather than an OpenMP team too large to create.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "anchorctx/core/parallel.h"

namespace anchorctx::cli {

inline CLI::Option* add_threads_option(CLI::App& cmd, int& threads, const std::string& help) {
  return cmd.add_option("--threads", threads, help)
      ->capture_default_str()
      ->check(CLI::Range(0, core::kMaxThreads));
}

}  // namespace anchorctx::cli
