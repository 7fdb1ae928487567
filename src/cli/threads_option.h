// The --threads option of every subcommand: 0 (all) to core::kMaxThreads, the one limit
// (core/parallel.h); a count outside it is a usage error naming the option, before any work,
// rather than an OpenMP team too large to create.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "anchorctx/core/parallel.h"

namespace anchorctx::cli {

// The help of a --threads that core::set_default_threads applies to the whole command.
inline constexpr const char* kRunThreadsHelp =
    "Threads of the whole run: attention, GEMMs and the layers' loops (0: all cores, or "
    "OMP_NUM_THREADS)";

inline CLI::Option* add_threads_option(CLI::App& cmd, int& threads, const std::string& help) {
  return cmd.add_option("--threads", threads, help)
      ->capture_default_str()
      ->check(CLI::Range(0, core::kMaxThreads));
}

}  // namespace anchorctx::cli
