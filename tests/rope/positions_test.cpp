// Position ids per policy (rope/positions.h) and the policy's one name table.
#include "anchorctx/rope/positions.h"

#include <gtest/gtest.h>

#include <vector>

namespace anchorctx::rope {
namespace {

using Ids = std::vector<std::int32_t>;

TEST(Positions, EachPolicyGivesItsIds) {
  const Ids starts{0, 1, 4};  // a shared anchor (token 0), then two documents
  const Ids shared_anchor{0};
  EXPECT_EQ(position_ids(PositionPolicy::global, starts, 7, shared_anchor),
            (Ids{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(position_ids(PositionPolicy::reset, starts, 7, shared_anchor),
            (Ids{0, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(position_ids(PositionPolicy::anchor, starts, 7, shared_anchor),
            (Ids{0, 1, 2, 3, 4, 5, 6}));
  // Per-document anchors: every document's anchor at 0, the rest global (the reference's flash
  // engine); without anchors `anchor` is `global`.
  const Ids per_doc{0, 3, 5};
  EXPECT_EQ(position_ids(PositionPolicy::anchor, per_doc, 7, per_doc), (Ids{0, 1, 2, 0, 4, 0, 6}));
  EXPECT_EQ(position_ids(PositionPolicy::anchor, per_doc, 7, {}), (Ids{0, 1, 2, 3, 4, 5, 6}));
  // Inputs only (length seq_len): a start or anchor at the label position is ignored.
  EXPECT_EQ(position_ids(PositionPolicy::reset, Ids{0, 3}, 3, {}), (Ids{0, 1, 2}));
  EXPECT_EQ(position_ids(PositionPolicy::anchor, Ids{0, 3}, 3, Ids{0, 3}), (Ids{0, 1, 2}));
}

TEST(Positions, NamesRoundTripAndUnknownNamesAreRefused) {
  for (const auto p : {PositionPolicy::global, PositionPolicy::reset, PositionPolicy::anchor})
    EXPECT_EQ(parse_position_policy(to_string(p)), p);
  EXPECT_EQ(core::enum_choices_text<PositionPolicy>(), "global, reset or anchor");
  EXPECT_FALSE(parse_position_policy("continuous"));
  EXPECT_FALSE(parse_position_policy(""));
}

}  // namespace
}  // namespace anchorctx::rope
