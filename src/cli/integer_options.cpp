// CLI11 2.1 converts an integer option with strtoll/strtoull without looking at errno, so a value
// beyond 64 bits saturates (`--steps 99999999999999999999` ran INT64_MAX steps) and strtoull
// takes `-1` as 2^64-1 (`--seed -1`). This check, on every integer option of the tree, refuses
// both before the conversion; it also runs for values from a --config file (toml_options.cpp).
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "cli/commands.h"

namespace anchorctx::cli {
namespace {

std::string check_integer(const std::string& value, bool is_unsigned) {
  std::size_t first = 0;
  while (first < value.size() && std::isspace(static_cast<unsigned char>(value[first])))
    ++first;
  if (is_unsigned && first < value.size() && value[first] == '-')
    return "'" + value + "' is negative; the option takes numbers from 0";
  char* end = nullptr;
  errno = 0;
  if (is_unsigned) {
    (void)std::strtoull(value.c_str(), &end, 0);
  } else {
    (void)std::strtoll(value.c_str(), &end, 0);
  }
  // Not a number at all: CLI11's own conversion names it.
  if (end == value.c_str() || *end != '\0') return "";
  if (errno == ERANGE) return "'" + value + "' is out of the range of a 64-bit integer";
  return "";
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

void check_integer_ranges(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name();
    const bool is_unsigned = starts_with(type, "UINT");
    if (!is_unsigned && !starts_with(type, "INT")) continue;
    option->check(CLI::Validator(
        [is_unsigned](std::string& value) { return check_integer(value, is_unsigned); }, "",
        "integer range"));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    check_integer_ranges(*sub);
}

}  // namespace anchorctx::cli
