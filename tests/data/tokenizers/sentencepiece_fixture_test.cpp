// The committed SentencePiece fixture of tools/fixtures/make_sentencepiece_fixtures.py: a small
// multilingual BPE model with byte fallback (tests/data/fixtures/spm_bpe.model) and, for each
// test string, the ids and decoded text of the Python sentencepiece package
// (spm_bpe_expected.json). Loaded through load_tokenizer, so it runs without ../shared/data.
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/utf8.h"
#include "anchorctx/data/tokenizer.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using json = nlohmann::json;
using Ids = std::vector<std::int32_t>;

std::filesystem::path fixtures_dir() {
  return std::filesystem::path(ANCHORCTX_TESTS_DIR) / "data" / "fixtures";
}

const json& expected() {
  static const json doc =
      json::parse(test::read_file((fixtures_dir() / "spm_bpe_expected.json").string()));
  return doc;
}

const Tokenizer& fixture_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok =
      load_tokenizer((fixtures_dir() / "spm_bpe.model").string());
  return *tok;
}

std::string from_hex(std::string_view hex) {
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    ADD_FAILURE() << "bad hex digit " << c;
    return 0;
  };
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    bytes.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  return bytes;
}

bool valid_utf8(std::string_view s) {
  return core::is_valid_utf8(s);
}

TEST(SentencepieceFixture, LoadsWithTheExpectedVocabulary) {
  const Tokenizer& tok = fixture_tokenizer();
  const json& want = expected();
  EXPECT_EQ(tok.kind(), "sentencepiece");
  EXPECT_EQ(tok.vocab_size(), want.at("vocab_size").get<std::int32_t>());
  ASSERT_TRUE(tok.bos_id().has_value());
  ASSERT_TRUE(tok.eos_id().has_value());
  EXPECT_EQ(*tok.bos_id(), want.at("bos_id").get<std::int32_t>());
  EXPECT_EQ(*tok.eos_id(), want.at("eos_id").get<std::int32_t>());
  // sentencepiece's default pad_id is -1: no padding piece.
  const auto pad = want.at("pad_id").get<std::int32_t>();
  if (pad < 0) {
    EXPECT_FALSE(tok.pad_id().has_value());
  } else {
    EXPECT_EQ(tok.pad_id(), pad);
  }
  EXPECT_FALSE(tok.content_hash().empty());
}

TEST(SentencepieceFixture, IdsAndDecodedTextMatchTheLibrary) {
  const Tokenizer& tok = fixture_tokenizer();
  const json& cases = expected().at("cases");
  ASSERT_GE(cases.size(), 30u);
  std::size_t invalid = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const std::string input = from_hex(c.at("hex").get<std::string>());
    const Ids want_ids = c.at("ids").get<Ids>();
    const std::string want_text = c.at("decoded").get<std::string>();

    const Ids ids = tok.encode(input);
    EXPECT_EQ(ids, want_ids);
    EXPECT_EQ(tok.decode(ids), want_text);
    EXPECT_EQ(tok.decode(want_ids), want_text);
    for (const std::int32_t id : ids) {
      EXPECT_NE(id, *tok.bos_id());  // encode never adds bos or eos
      EXPECT_NE(id, *tok.eos_id());
    }
    EXPECT_TRUE(valid_utf8(want_text));

    if (c.at("valid_utf8").get<bool>()) {
      EXPECT_TRUE(valid_utf8(input));
      EXPECT_EQ(c.at("text").get<std::string>(), input);
      // Identity normalization: the text comes back unchanged, except U+2581 (the
      // whitespace symbol), which decodes to a space.
      if (input.find("\xE2\x96\x81") == std::string::npos) {
        EXPECT_EQ(tok.decode(ids), input);
      }
    } else {
      ++invalid;
      EXPECT_FALSE(valid_utf8(input));
      // Each invalid byte comes back as U+FFFD.
      EXPECT_NE(want_text.find("\xEF\xBF\xBD"), std::string::npos);
    }
  }
  EXPECT_GE(invalid, 5u);
}

TEST(SentencepieceFixture, ArbitraryBytesNeverCrashAndDecodeToValidUtf8) {
  const Tokenizer& tok = fixture_tokenizer();
  // Every single byte, then random byte strings (fixed seed) biased towards UTF-8 lead and
  // continuation bytes.
  std::vector<std::string> inputs;
  for (int b = 0; b < 256; ++b)
    inputs.emplace_back(1, static_cast<char>(b));
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> length(1, 40);
  std::uniform_int_distribution<int> byte(0, 255);
  const char kBiased[] = {'\x80', '\xBF', '\xC0', '\xC3', '\xE2', '\xED',
                          '\xF0', '\xF4', '\xF8', '\xFF', ' ',    'a'};
  std::uniform_int_distribution<std::size_t> biased(0, sizeof(kBiased) - 1);
  for (int i = 0; i < 500; ++i) {
    std::string s;
    const int n = length(rng);
    for (int k = 0; k < n; ++k)
      s.push_back((k % 2 == 0) ? kBiased[biased(rng)] : static_cast<char>(byte(rng)));
    inputs.push_back(std::move(s));
  }
  for (const std::string& input : inputs) {
    const Ids ids = tok.encode(input);
    const std::string text = tok.decode(ids);
    EXPECT_TRUE(valid_utf8(text)) << "input of " << input.size() << " bytes";
    if (valid_utf8(input) && input.find("\xE2\x96\x81") == std::string::npos) {
      EXPECT_EQ(text, input);
    }
  }
}

TEST(SentencepieceFixture, DecodeRejectsIdsOutsideTheVocabulary) {
  const Tokenizer& tok = fixture_tokenizer();
  const Ids below{-1};
  const Ids above{tok.vocab_size()};
  EXPECT_THROW(tok.decode(below), Error);
  EXPECT_THROW(tok.decode(above), Error);
}

}  // namespace
}  // namespace anchorctx::data
