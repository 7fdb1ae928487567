// One table per enum: the names of an enum's values written once, next to the enum, and read by
// everything that spells them: to_string, parse, the command line's choices and its error text,
// the options a run records.
//
// An enum E takes part by a function found by argument-dependent lookup in E's namespace,
//
//   constexpr std::span<const core::EnumName<E>> enum_names(E) { return kTable; }
//
// whose table lists every value once under its canonical name (first), and may add aliases
// that parse accepts but nothing prints (`intra-doc` for `intra_doc`).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::core {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
  bool alias = false;  // accepted by parse_enum, never printed
};

template <typename E>
concept NamedEnum = requires(E e) {
  { enum_names(e) } -> std::convertible_to<std::span<const EnumName<E>>>;
};

// The canonical name of `value` ("?" for a value the table lacks, which a test rules out).
template <NamedEnum E>
constexpr std::string_view enum_name(E value) {
  for (const EnumName<E>& entry : enum_names(E{}))
    if (!entry.alias && entry.value == value) return entry.name;
  return "?";
}

// The value named `name` (a canonical name or an alias), or nullopt.
template <NamedEnum E>
constexpr std::optional<E> parse_enum(std::string_view name) {
  for (const EnumName<E>& entry : enum_names(E{}))
    if (entry.name == name) return entry.value;
  return std::nullopt;
}

// The canonical names in table order.
template <NamedEnum E>
std::vector<std::string> enum_choices() {
  std::vector<std::string> names;
  for (const EnumName<E>& entry : enum_names(E{}))
    if (!entry.alias) names.emplace_back(entry.name);
  return names;
}

// The canonical names as a sentence: "causal, intra_doc or anchor".
template <NamedEnum E>
std::string enum_choices_text() {
  const std::vector<std::string> names = enum_choices<E>();
  std::string text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " or " : ", ";
    text += names[i];
  }
  return text;
}

}  // namespace anchorctx::core
