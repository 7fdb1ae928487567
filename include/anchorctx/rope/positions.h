// Position ids: the policies that give each token of a packed window its RoPE position
// (DESIGN.md, core contracts). One type serves the trainer, the benchmarks and rope-drift.
//
//   global  0..length-1 across the whole window (the paper's continuous ids);
//   reset   each document counts from 0 (intra-document attention with reset ids);
//   anchor  global, except the anchor tokens, which sit at 0 (AnchorAttention, paper §2).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::rope {

enum class PositionPolicy { global, reset, anchor };
inline constexpr core::EnumName<PositionPolicy> kPositionPolicyNames[] = {
    {PositionPolicy::global, "global"},
    {PositionPolicy::reset, "reset"},
    {PositionPolicy::anchor, "anchor"}};
constexpr std::span<const core::EnumName<PositionPolicy>> enum_names(PositionPolicy) {
  return kPositionPolicyNames;
}

constexpr std::string_view to_string(PositionPolicy policy) {
  return core::enum_name(policy);
}
constexpr std::optional<PositionPolicy> parse_position_policy(std::string_view name) {
  return core::parse_enum<PositionPolicy>(name);
}

// Position ids of a window of `length` tokens whose documents start at `doc_starts` (sorted,
// first 0; starts at or past `length` are ignored) under `policy`. `anchors` are the offsets of
// the anchor tokens (`anchor` puts them at 0; the window's first token in the shared anchor
// mode, every document's first token in the per-document mode, none without anchors).
std::vector<std::int32_t> position_ids(PositionPolicy policy,
                                       std::span<const std::int32_t> doc_starts,
                                       std::int32_t length, std::span<const std::int32_t> anchors);

}  // namespace anchorctx::rope
