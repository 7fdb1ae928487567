// Weight-file checks shared by the loaders (see weight_checks.h).
#include "model/weight_checks.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/core/error.h"

namespace anchorctx::model {

std::optional<NonFiniteValues> find_non_finite(std::span<const float> values) {
  // Exponent bits all ones: infinity or NaN. Adding one to the exponent field carries into the
  // sign bit exactly then; OR-reduced with no compare or branch, so it vectorises to and/add/or.
  constexpr std::uint32_t kExponent = 0x7F800000u, kExponentOne = 0x00800000u;
  std::uint32_t carry = 0;
  for (const float v : values)
    carry |= (std::bit_cast<std::uint32_t>(v) & kExponent) + kExponentOne;
  if ((carry & 0x80000000u) == 0) return std::nullopt;
  NonFiniteValues found;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i])) continue;
    if (found.count++ == 0) {
      found.first = i;
      found.value = values[i];
    }
  }
  return found;
}

void require_finite(std::span<const float> values, std::string_view tensor,
                    std::string_view source) {
  const std::optional<NonFiniteValues> bad = find_non_finite(values);
  if (!bad) return;
  fail(
      "tensor '{}' in {}: {} non-finite value(s), the first at element {} ({}); the weights are "
      "damaged (a diverged run's?) and are not loaded",
      tensor, source, bad->count, bad->first, bad->value);
}

void require_no_unused_tensors(const SafetensorsReader& reader, const std::set<std::string>& used) {
  std::vector<std::string> unused;
  for (const TensorInfo& t : reader.tensors()) {
    if (used.contains(t.name) || t.name.ends_with(".rotary_emb.inv_freq")) continue;
    unused.push_back(t.name);
  }
  if (unused.empty()) return;
  const std::size_t shown = std::min<std::size_t>(unused.size(), 5);
  fail(
      "{}: {} tensor(s) the config does not call for: {}{} (a config with fewer layers than the "
      "weights, or another model's file?)",
      reader.source(), unused.size(), fmt::join(std::span(unused).first(shown), ", "),
      unused.size() > shown ? ", ..." : "");
}

std::string stored_tensor_name(const SafetensorsReader& reader, const std::string& name,
                               bool tied) {
  constexpr const char* kEmbedding = "model.embed_tokens.weight";
  constexpr const char* kHead = "lm_head.weight";
  if (tied && name == kEmbedding && reader.find(kEmbedding) == nullptr &&
      reader.find(kHead) != nullptr)
    return kHead;
  return name;
}

}  // namespace anchorctx::model
