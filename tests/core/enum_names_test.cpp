// The enum name tables (core/enum_names.h): every table names each value once canonically,
// no name twice, and to_string/parse round-trip through it; aliases parse but never print.
#include "anchorctx/core/enum_names.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "anchorctx/attention/mask.h"
#include "anchorctx/core/dtype.h"
#include "anchorctx/data/document_reader.h"
#include "anchorctx/data/packer.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/rope/positions.h"
#include "anchorctx/rope/rope.h"
#include "anchorctx/rope/scaling.h"
#include "anchorctx/train/schedule.h"

namespace anchorctx {
namespace {

// `count` values 0..count-1 of E: each canonical exactly once, names unique, round trip.
template <core::NamedEnum E>
void expect_well_formed(int count) {
  std::set<std::string> names;
  std::multiset<int> canonical;
  for (const core::EnumName<E>& entry : enum_names(E{})) {
    EXPECT_TRUE(names.insert(std::string(entry.name)).second) << "name twice: " << entry.name;
    EXPECT_FALSE(entry.name.empty());
    if (!entry.alias) canonical.insert(static_cast<int>(entry.value));
    EXPECT_EQ(core::parse_enum<E>(entry.name), entry.value) << entry.name;
  }
  for (int v = 0; v < count; ++v) {
    EXPECT_EQ(canonical.count(v), 1u) << "value " << v << " of " << core::enum_choices_text<E>();
    const E value = static_cast<E>(v);
    EXPECT_EQ(core::parse_enum<E>(core::enum_name(value)), value);
  }
  EXPECT_EQ(static_cast<int>(core::enum_choices<E>().size()), count);
  EXPECT_FALSE(core::parse_enum<E>("no-such-name"));
}

TEST(EnumNames, EveryTableNamesEachValueOnce) {
  expect_well_formed<attention::MaskKind>(3);
  expect_well_formed<rope::PositionPolicy>(3);
  expect_well_formed<rope::RopeMode>(3);
  expect_well_formed<rope::RopeScalingType>(5);
  expect_well_formed<model::Precision>(2);
  expect_well_formed<train::ScheduleKind>(3);
  expect_well_formed<data::AnchorMode>(3);
  expect_well_formed<data::InputFormat>(4);
  expect_well_formed<core::DType>(2);
  expect_well_formed<model::ModelType>(3);
  expect_well_formed<model::Bf16Compute>(2);
}

TEST(EnumNames, AliasesParseButNeverPrint) {
  EXPECT_EQ(attention::parse_mask_kind("intra-doc"), attention::MaskKind::intra_doc);
  EXPECT_EQ(attention::to_string(attention::MaskKind::intra_doc), "intra_doc");
  EXPECT_EQ(core::parse_dtype("bfloat16"), core::DType::bf16);
  EXPECT_EQ(core::to_string(core::DType::f32), "fp32");
  EXPECT_EQ(rope::parse_rope_scaling_type("none"), rope::RopeScalingType::none);
  EXPECT_EQ(rope::to_string(rope::RopeScalingType::none), "default");
  EXPECT_EQ(core::enum_choices_text<attention::MaskKind>(), "causal, intra_doc or anchor");
  EXPECT_EQ(core::enum_choices_text<model::Precision>(), "fp32 or bf16");
}

}  // namespace
}  // namespace anchorctx
