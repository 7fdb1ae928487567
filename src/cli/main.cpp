// `anchorctx`: the command line. This file only builds the command tree and maps failures to
// exit codes (0 success, 1 error, 2 usage, 128 + the signal when SIGINT or SIGTERM stopped a
// command that polls for them at safe points, core/interrupt.h); each subcommand lives in its own
// file (commands.h).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/core/utf8.h"
#include "cli/commands.h"
#include "cli/out_of_memory.h"

int main(int argc, char** argv) {
  CLI::App app{"anchorctx: AnchorAttention for long-context LLM training", "anchorctx"};
  app.set_version_flag("--version", std::string("anchorctx ") + anchorctx::kVersion);
  app.require_subcommand(1);

  CLI::App* bench = app.add_subcommand("bench", "Measure the speed of a part");
  bench->require_subcommand(1);
  anchorctx::cli::register_bench_attention(*bench);
  anchorctx::cli::register_tokenize(app);
  anchorctx::cli::register_pack(app);
  anchorctx::cli::register_inspect(app);
  anchorctx::cli::register_convert(app);
  anchorctx::cli::register_generate(app);
  anchorctx::cli::register_train(app);
  anchorctx::cli::register_demo(app);
  anchorctx::cli::register_bench_train(*bench);
  anchorctx::cli::register_rope_drift(app);
  anchorctx::cli::register_eval(app);
  anchorctx::cli::register_plan(app);
  anchorctx::cli::register_study(app);
  anchorctx::cli::check_integer_ranges(app);

  // What anchorctx records of its options and paths goes into JSON (meta.json, trainer_state.json,
  // reports), which holds Unicode text: an argument that is not UTF-8 is refused before any work
  // (it failed at the first JSON write, after the work). Raw bytes go in a file (--text-file).
  for (int i = 1; i < argc; ++i) {
    if (anchorctx::core::is_valid_utf8(argv[i])) continue;
    std::fprintf(stderr,
                 "anchorctx: error: argument %d, '%s', is not valid UTF-8 (invalid bytes shown as "
                 "U+FFFD): anchorctx records its options and paths as JSON text; rename the file "
                 "or pass raw bytes in a file\n",
                 i, anchorctx::core::utf8_lossy(argv[i]).c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "anchorctx: error: %s\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "anchorctx: error: %s\n", anchorctx::cli::out_of_memory_message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anchorctx: error: %s\n", e.what());
    // Stopped by Ctrl-C or SIGTERM at a safe point: the shell's status for that signal.
    if (const int sig = anchorctx::core::interrupt_signal(); sig != 0) return 128 + sig;
    return 1;
  }
  // What went to stdout (ids, text, --json objects) must have arrived: into a full disk or
  // /dev/full it was lost while the command exited 0. stdio keeps the error until here.
  if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
    std::fprintf(stderr, "anchorctx: error: writing the output on stdout failed: %s\n",
                 std::strerror(errno != 0 ? errno : EIO));
    return 1;
  }
  return 0;
}
