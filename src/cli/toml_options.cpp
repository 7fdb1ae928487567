// Options of a subcommand from a TOML file. CLI11 reads config files for the top-level app only
// (CLIUtils/CLI11#1056), so a subcommand's `--config` is applied here, after the command line
// is parsed: each `key = value` sets the option `--key` unless the command line gave it.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "anchorctx/core/error.h"
#include "anchorctx/core/utf8.h"
#include "cli/commands.h"

namespace anchorctx::cli {
namespace {
// A key or value of the file the command line would refuse: a usage error (exit 2), as there.
template <typename... A>
[[noreturn]] void usage_error(fmt::format_string<A...> format, A&&... args) {
  throw CLI::ValidationError(fmt::format(format, std::forward<A>(args)...));
}

// The line that sets `key` (CLI11's reader keeps no line numbers): its 1-based number (0 if
// none is found) and the text after its '=', trimmed.
struct KeyLine {
  std::size_t number = 0;
  std::string value;
};

std::string trimmed(const std::string& text, const char* chars) {
  const std::size_t first = text.find_first_not_of(chars);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(chars) - first + 1);
}

KeyLine line_of(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  std::string line;
  for (std::size_t number = 1; std::getline(lines, line); ++number) {
    const std::size_t eq = line.find('=');
    if (trimmed(line.substr(0, eq), " \t\r\"'") != key) continue;
    // A bare key is a flag set to true, as CLI11 reads it.
    return {number, eq == std::string::npos ? "true" : trimmed(line.substr(eq + 1), " \t\r")};
  }
  return {};
}

}  // namespace

void apply_toml_options(CLI::App& cmd, const std::string& path) {
  // A folder opens as an empty stream (and a FIFO would block): only a regular file is a config.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    fail("--config '{}': not a regular file (a TOML file of options is expected)", path);
  std::ifstream in(path);
  if (!in) fail("--config '{}': cannot open it", path);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail("--config '{}': cannot read it", path);
  std::istringstream stream(text);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(stream);
  } catch (const CLI::ParseError& e) {
    fail("--config '{}': {}", path, e.what());
  }
  for (const CLI::ConfigItem& item : items) {
    const std::string key = item.fullname();
    const KeyLine line = line_of(text, key);
    const std::string where = line.number > 0
                                  ? fmt::format("--config '{}': line {}", path, line.number)
                                  : fmt::format("--config '{}'", path);
    if (key == "config") usage_error("{}: a config file cannot name another", where);
    // Options are recorded as JSON text (trainer_state.json, reports), as main.cpp says of the
    // arguments: bytes that are not UTF-8 failed at the first checkpoint, after the training,
    // with nlohmann's text naming nothing. TOML files are UTF-8 by definition, too.
    if (!core::is_valid_utf8(key))
      usage_error("{}: key '{}' is not valid UTF-8 (invalid bytes shown as U+FFFD)", where,
                  core::utf8_lossy(key));
    for (const std::string& input : item.inputs)
      if (!core::is_valid_utf8(input))
        usage_error(
            "{}: '{}': the value '{}' is not valid UTF-8 (invalid bytes shown as U+FFFD); "
            "anchorctx records its options as JSON text",
            where, key, core::utf8_lossy(input));
    CLI::Option* option = cmd.get_option_no_throw("--" + key);
    if (option == nullptr)
      usage_error(
          "{}: unknown option '{}' (keys are the long option names without the "
          "leading dashes; see {} --help)",
          where, key, cmd.get_name());
    // `key =` with nothing after it: CLI11's reader passes an empty string, which an option
    // would otherwise read as its default or as 0 (`key = ""` is a value: the empty string).
    if (line.number > 0 && (line.value.empty() || line.value[0] == '#'))
      usage_error("{}: '{}' has no value (write key = value)", where, key);
    if (option->count() > 0) continue;  // the command line wins
    std::vector<std::string> inputs = item.inputs;
    if (inputs.empty()) continue;        // `key = []`: no values (how a run records an empty list)
    if (option->get_type_size() == 0) {  // a flag: true/false
      if (inputs.size() != 1 || (inputs[0] != "true" && inputs[0] != "false"))
        usage_error("{}: '{}' is a flag and takes true or false", where, key);
      if (inputs[0] == "false") continue;
      inputs = {"true"};
    }
    try {
      option->add_result(inputs);
      option->run_callback();
    } catch (const CLI::ParseError& e) {
      usage_error("{}: '{}': {}", where, key, e.what());
    }
  }
}

}  // namespace anchorctx::cli
