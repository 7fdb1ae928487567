// Options of a subcommand from a TOML file. CLI11 reads config files for the top-level app only
// (CLIUtils/CLI11#1056), so a subcommand's `--config` is applied here, after the command line
// is parsed: each `key = value` sets the option `--key` unless the command line gave it.
#include <fstream>
#include <string>

#include "anchorctx/core/error.h"
#include "cli/commands.h"

namespace anchorctx::cli {

void apply_toml_options(CLI::App& cmd, const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("--config '{}': cannot open it", path);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const CLI::ParseError& e) {
    fail("--config '{}': {}", path, e.what());
  }
  for (const CLI::ConfigItem& item : items) {
    const std::string key = item.fullname();
    if (key == "config") fail("--config '{}': a config file cannot name another", path);
    CLI::Option* option = cmd.get_option_no_throw("--" + key);
    if (option == nullptr)
      fail(
          "--config '{}': unknown option '{}' (keys are the long option names without the "
          "leading dashes; see {} --help)",
          path, key, cmd.get_name());
    if (option->count() > 0) continue;  // the command line wins
    std::vector<std::string> inputs = item.inputs;
    if (inputs.empty()) continue;        // `key = []`: no values (how a run records an empty list)
    if (option->get_type_size() == 0) {  // a flag: true/false
      if (inputs.size() != 1 || (inputs[0] != "true" && inputs[0] != "false"))
        fail("--config '{}': '{}' is a flag and takes true or false", path, key);
      if (inputs[0] == "false") continue;
      inputs = {"true"};
    }
    try {
      option->add_result(inputs);
      option->run_callback();
    } catch (const CLI::ParseError& e) {
      fail("--config '{}': '{}': {}", path, key, e.what());
    }
  }
}

}  // namespace anchorctx::cli
