// Command-line options whose values are names from an enum's table (core/enum_names.h): the
// help lists the choices, the default shown is the target's value, and an unknown name is a
// usage error that lists the choices. Nothing here spells a name.
#pragma once

#include <optional>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::cli {

// The value named `value`, or CLI::ValidationError "OPTION: 'value' is not one of a, b or c".
template <core::NamedEnum E>
E parse_enum_option(const std::string& option, const std::string& value) {
  if (const std::optional<E> parsed = core::parse_enum<E>(value)) return *parsed;
  throw CLI::ValidationError(
      option, fmt::format("'{}' is not one of {}", value, core::enum_choices_text<E>()));
}

// "{a,b,c}", the help's placeholder for the value.
template <core::NamedEnum E>
std::string enum_placeholder() {
  std::string text = "{";
  for (const std::string& name : core::enum_choices<E>())
    text += (text.size() > 1 ? "," : "") + name;
  return text + "}";
}

// A check for a string option that is parsed later: the value must be a name of E.
template <core::NamedEnum E>
CLI::Validator enum_check() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (core::parse_enum<E>(value)) return {};
        return fmt::format("'{}' is not one of {}", value, core::enum_choices_text<E>());
      },
      enum_placeholder<E>());
}

// `--name` sets `target` from a name; the help shows the choices and the current value.
template <core::NamedEnum E>
CLI::Option* add_enum_option(CLI::App& cmd, const std::string& name, E& target,
                             const std::string& description) {
  CLI::Option* option = cmd.add_option_function<std::string>(
      name, [&target, name](const std::string& v) { target = parse_enum_option<E>(name, v); },
      description);
  option->type_name(enum_placeholder<E>());
  option->default_str(std::string(core::enum_name(target)));
  return option;
}

// The same for an option whose absence means "decided later" (the description says how).
template <core::NamedEnum E>
CLI::Option* add_enum_option(CLI::App& cmd, const std::string& name, std::optional<E>& target,
                             const std::string& description) {
  CLI::Option* option = cmd.add_option_function<std::string>(
      name, [&target, name](const std::string& v) { target = parse_enum_option<E>(name, v); },
      description);
  option->type_name(enum_placeholder<E>());
  return option;
}

}  // namespace anchorctx::cli
