#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {
namespace {

TEST(ByteTokenizer, EveryByteIsItsOwnToken) {
  const auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->encode("hi"), (std::vector<std::int32_t>{104, 105}));
  EXPECT_TRUE(tok->encode("").empty());
  // Invalid UTF-8 and NUL are bytes like any other.
  const std::string raw("\xff\x00\xc3", 3);
  EXPECT_EQ(tok->encode(raw), (std::vector<std::int32_t>{255, 0, 195}));
  EXPECT_EQ(tok->decode(tok->encode(raw)), raw);
}

TEST(ByteTokenizer, SpecialIdsAndIdentity) {
  const auto tok = load_tokenizer("byte");
  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_EQ(tok->pad_id(), 258);
  EXPECT_EQ(tok->content_hash(), make_byte_tokenizer()->content_hash());
}

TEST(ByteTokenizer, DecodeDropsSpecialTokensAndRejectsUnknownIds) {
  const auto tok = make_byte_tokenizer();
  const std::vector<std::int32_t> ids{256, 104, 258, 105, 257};
  EXPECT_EQ(tok->decode(ids), "hi");
  const std::vector<std::int32_t> too_big{259};
  const std::vector<std::int32_t> negative{-1};
  EXPECT_THROW(tok->decode(too_big), Error);
  EXPECT_THROW(tok->decode(negative), Error);
}

TEST(ByteTokenizer, AllBytesRoundTrip) {
  const auto tok = make_byte_tokenizer();
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(static_cast<char>(b));
  const std::vector<std::int32_t> ids = tok->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok->decode(ids), all);
}

}  // namespace
}  // namespace anchorctx::data
