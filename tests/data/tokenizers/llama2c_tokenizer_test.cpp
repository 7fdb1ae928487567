// llama2.c tokenizer.bin: hand-checked BPE merges on tiny vocabularies written here, a naive
// transcription of run.c's encode as a cross-check, bad files, and the real stories260K
// tokenizer when ../shared/data is present.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/data/tokenizer.h"
#include "data/tokenizers/loaders.h"
#include "support/llama2c_tokenizer.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using Ids = std::vector<std::int32_t>;

using Piece = test::Llama2cPiece;
using test::llama2c_tokenizer_bytes;

std::vector<Piece> specials() {
  return {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
}

// No byte fallback: ids 3.. are the pieces below.
std::vector<Piece> tiny_vocab() {
  std::vector<Piece> v = specials();
  const std::vector<Piece> rest = {
      {" ", 0},        // 3
      {"a", 0},        // 4
      {"b", 0},        // 5
      {"c", 0},        // 6
      {"ab", 3},       // 7
      {"bc", 5},       // 8
      {" a", 1},       // 9
      {"abc", 2},      // 10
      {" abc", 4},     // 11
      {"aa", 3},       // 12: ties with "ab"
      {"bb", -2e10f},  // 13: below run.c's threshold, never merged
  };
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

// The llama2.c layout: byte pieces <0x00>..<0xFF> at 3..258, then normal pieces from 259.
std::vector<Piece> byte_fallback_vocab() {
  std::vector<Piece> v = specials();
  for (int b = 0; b < 256; ++b)
    v.push_back({fmt::format("<0x{:02X}>", b), 0});
  const std::vector<Piece> rest = {
      {" ", 0},         // 259
      {"a", 0},         // 260
      {"b", 0},         // 261
      {" a", 1},        // 262
      {"\xc3\xa9", 0},  // 263: é
      {"<", 0},         // 264
      {"0", 0},         // 265
      {"x", 0},         // 266
      {"4", 0},         // 267
      {"1", 0},         // 268
      {">", 0},         // 269
      {"<0", 1},        // 270
      {"<0x", 2},       // 271
      {"<0x4", 3},      // 272
      {"1>", 4},        // 273
  };
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

// run.c's encode transcribed naively (quadratic: rescan every pair after each merge), with
// the same exclusions as the tokenizer: special and byte pieces never match text or merges.
Ids naive_encode(const std::vector<Piece>& vocab, std::string_view text) {
  std::map<std::string, std::int32_t> lookup;
  std::map<int, std::int32_t> byte_ids;
  for (std::size_t i = 3; i < vocab.size(); ++i) {
    const std::string& t = vocab[i].text;
    if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') {
      byte_ids.emplace(std::stoi(t.substr(3, 2), nullptr, 16), static_cast<std::int32_t>(i));
    } else {
      lookup.emplace(t, static_cast<std::int32_t>(i));
    }
  }
  Ids ids;
  std::vector<bool> is_byte;
  const auto add = [&](std::string_view chunk) {
    if (auto it = lookup.find(std::string(chunk)); it != lookup.end()) {
      ids.push_back(it->second);
      is_byte.push_back(false);
    } else {
      for (const char c : chunk) {
        ids.push_back(byte_ids.at(static_cast<unsigned char>(c)));
        is_byte.push_back(true);
      }
    }
  };
  if (text.empty()) return ids;
  add(" ");
  for (std::size_t i = 0; i < text.size();) {
    std::size_t end = i + 1;
    while (end < text.size() && end - i < 4 &&
           (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
      ++end;
    add(text.substr(i, end - i));
    i = end;
  }
  for (;;) {
    float best = -1e10f;
    std::int64_t best_i = -1;
    std::int32_t best_id = -1;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      if (is_byte[i] || is_byte[i + 1]) continue;
      const auto it = lookup.find(vocab[ids[i]].text + vocab[ids[i + 1]].text);
      if (it != lookup.end() && vocab[it->second].score > best) {
        best = vocab[it->second].score;
        best_i = static_cast<std::int64_t>(i);
        best_id = it->second;
      }
    }
    if (best_i < 0) break;
    ids[best_i] = best_id;
    ids.erase(ids.begin() + best_i + 1);
    is_byte.erase(is_byte.begin() + best_i + 1);
  }
  return ids;
}

class Llama2cTiny : public ::testing::Test {
 protected:
  std::unique_ptr<Tokenizer> load(const std::vector<Piece>& vocab) {
    return load_llama2c_tokenizer(dir_.write("tokenizer.bin", llama2c_tokenizer_bytes(vocab)));
  }
  test::TempDir dir_;
};

TEST_F(Llama2cTiny, MergesTheBestScoringPairFirst) {
  const auto tok = load(tiny_vocab());
  // [" ",a,b,c]: bc (5), then abc (2, beats " a" 1), then " abc" (4).
  EXPECT_EQ(tok->encode("abc"), (Ids{11}));
  // [" ",c," ",a,b]: ab (3) beats " a" (1); " ab" is not a piece.
  EXPECT_EQ(tok->encode("c ab"), (Ids{3, 6, 3, 7}));
  EXPECT_EQ(tok->encode("a"), (Ids{9}));
  EXPECT_TRUE(tok->encode("").empty());
}

TEST_F(Llama2cTiny, EqualScoresMergeTheLeftmostPair) {
  const auto tok = load(tiny_vocab());
  // [" ",a,a,b]: aa and ab both score 3; the leftmost (aa) wins, and " aa" / "aab" are no
  // pieces. Taking ab first would have given [" a", ab] = {9, 7}.
  EXPECT_EQ(tok->encode("aab"), (Ids{3, 12, 5}));
}

TEST_F(Llama2cTiny, PiecesScoringAtMostMinus1e10NeverMerge) {
  const auto tok = load(tiny_vocab());
  EXPECT_EQ(tok->encode("bb"), (Ids{3, 5, 5}));
}

TEST_F(Llama2cTiny, ACharacterWithoutPieceOrByteFallbackIsAnError) {
  const auto tok = load(tiny_vocab());
  try {
    tok->encode("az");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0x7A"), std::string::npos) << e.what();
  }
}

TEST_F(Llama2cTiny, IdentityAndSpecialIds) {
  const std::string path = dir_.write("tokenizer.bin", llama2c_tokenizer_bytes(tiny_vocab()));
  const auto tok = load_tokenizer(path);  // recognised by the .bin extension
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 14);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), std::nullopt);
  EXPECT_EQ(tok->content_hash(), core::hash_file_hex(path));
  // A folder holding tokenizer.bin loads the same tokenizer.
  EXPECT_EQ(load_tokenizer(dir_.path().string())->content_hash(), tok->content_hash());
}

TEST_F(Llama2cTiny, ByteFallbackForUnknownCharactersAndInvalidUtf8) {
  const auto tok = load(byte_fallback_vocab());
  EXPECT_EQ(tok->encode("z"), (Ids{259, 3 + 'z'}));
  EXPECT_EQ(tok->encode("\xc3\xa9"), (Ids{259, 263}));                 // é is a piece
  EXPECT_EQ(tok->encode("\xc3\xbc"), (Ids{259, 3 + 0xC3, 3 + 0xBC}));  // ü is not
  EXPECT_EQ(tok->encode("\xff"), (Ids{259, 3 + 0xFF}));
  EXPECT_EQ(tok->encode(std::string_view("a\0", 2)), (Ids{262, 3}));  // NUL is a byte
  // Byte tokens never merge: " " then the bytes of ü stay apart from "a".
  EXPECT_EQ(tok->encode("\xc3\xbc"
                        "a"),
            (Ids{259, 3 + 0xC3, 3 + 0xBC, 260}));
}

TEST_F(Llama2cTiny, BytePiecesAreNeverProducedFromText) {
  const auto tok = load(byte_fallback_vocab());
  // "<0x4" + "1>" spells "<0x41>", the byte piece of 'A' (id 68), which run.c would merge
  // into; here it stays text, so the text round-trips.
  const Ids ids = tok->encode("<0x41>");
  EXPECT_EQ(ids, (Ids{259, 272, 273}));
  EXPECT_EQ(tok->decode(ids), "<0x41>");
}

TEST_F(Llama2cTiny, DecodeDropsSpecialsAndTheDummyPrefix) {
  const auto tok = load(byte_fallback_vocab());
  EXPECT_EQ(tok->decode(Ids{1, 262, 2}), "a");     // bos " a" eos
  EXPECT_EQ(tok->decode(Ids{262, 262}), "a a");    // only the first piece loses its space
  EXPECT_EQ(tok->decode(Ids{260, 1, 262}), "aa");  // and the first after each bos
  EXPECT_EQ(tok->decode(Ids{0, 260}), "a");        // <unk> decodes to nothing
  EXPECT_EQ(tok->decode(Ids{3 + 0xC3, 3 + 0xBC}), "\xc3\xbc");  // byte pieces are raw bytes
  EXPECT_EQ(tok->decode(Ids{3 + 0x20, 260}), "a");  // a dummy prefix that fell back to bytes
  EXPECT_EQ(tok->decode(Ids{}), "");
  EXPECT_THROW(tok->decode(Ids{274}), Error);
  EXPECT_THROW(tok->decode(Ids{-1}), Error);
}

TEST_F(Llama2cTiny, RandomTextMatchesNaiveRunCAndRoundTrips) {
  const std::vector<Piece> vocab = byte_fallback_vocab();
  const auto tok = load(vocab);
  const std::vector<std::string> atoms = {" ",    "a",    "b",    "<", "0",
                                          "x",    "4",    "1",    ">", "\xc3\xa9",
                                          "\xc3", "\xa9", "\xff", "z", std::string(1, '\0')};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i)
      text += atoms[rng() % atoms.size()];
    const Ids ids = tok->encode(text);
    EXPECT_EQ(ids, naive_encode(vocab, text)) << testing::PrintToString(text);
    EXPECT_EQ(tok->decode(ids), text) << testing::PrintToString(text);
  }
}

// ---- bad files ----

// Loading `bytes` must throw anchorctx::Error whose message names the file and holds `what`.
void expect_load_error(const test::TempDir& dir, std::string_view bytes, const std::string& what) {
  const std::string path = dir.write("bad.bin", bytes);
  for (const bool through_dispatch : {false, true}) {
    try {
      if (through_dispatch) {
        load_tokenizer(path);
      } else {
        load_llama2c_tokenizer(path);
      }
      ADD_FAILURE() << "no error for " << testing::PrintToString(std::string(bytes));
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      EXPECT_NE(message.find(what), std::string::npos) << message;
    }
  }
}

TEST_F(Llama2cTiny, BadFilesGiveErrorsNamingTheFile) {
  const std::string good = llama2c_tokenizer_bytes(tiny_vocab());
  expect_load_error(dir_, "", "empty");
  expect_load_error(dir_, "\x07\x00", "too short");
  expect_load_error(dir_, std::string("\x07\x00\x00\x00", 4), "holds 0 tokens");
  expect_load_error(dir_, std::string("\xff\xff\xff\xff", 4), "not positive");
  // Truncated inside the last token's bytes, then inside its score/length fields.
  expect_load_error(dir_, good.substr(0, good.size() - 1), "truncated in token 13");
  expect_load_error(dir_, good.substr(0, good.size() - 2 - 5), "truncated in token 13");
  // A length above max_token_length, and a negative one.
  expect_load_error(dir_, llama2c_tokenizer_bytes(tiny_vocab(), 5), "token 2 has length 6");
  std::string negative = llama2c_tokenizer_bytes(specials());
  negative += std::string("\0\0\0\0\xfe\xff\xff\xff", 8);
  expect_load_error(dir_, negative, "token 3 has length -2");
}

TEST_F(Llama2cTiny, GarbageNeverCrashes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes)
      c = static_cast<char>(rng());
    if (trial % 2 == 0 && bytes.size() >= 4) bytes[0] = 6, bytes[1] = bytes[2] = bytes[3] = 0;
    const std::string path = dir_.write("garbage.bin", bytes);
    try {
      const auto tok = load_llama2c_tokenizer(path);
      // Whatever loaded must still encode and decode without crashing.
      try {
        tok->decode(tok->encode("garbage in"));
      } catch (const Error&) {
      }
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

// ---- the real stories260K tokenizer ----

TEST(Llama2cStories260k, KnownIds) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "stories260k/tok512.bin");
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 512);
  // Expected ids computed with a line-by-line Python transcription of llama2.c's run.c encode.
  EXPECT_EQ(tok->encode("Once upon a time"), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("One day, she saw a big, red ball."),
            (Ids{385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426}));
  EXPECT_EQ(tok->encode("Lily's mom said, \"Lily, let's go to the park.\""),
            (Ids{317, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316,
                 439, 419, 298, 414, 267, 265, 282, 295, 433, 426, 436}));
  EXPECT_EQ(tok->encode("The caf\xc3\xa9 served cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                        "e \xf0\x9f\x98\x80!"),
            (Ids{291, 280, 412, 431, 485, 262, 285, 396, 280, 420, 198, 171, 423, 411,
                 268, 420, 198, 190, 421, 485, 411, 410, 243, 162, 155, 131, 443}));
  EXPECT_EQ(tok->decode(Ids{1, 403, 407, 261, 378}), "Once upon a time");
}

TEST(Llama2cStories260k, ExpectedStoryRoundTrips) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "stories260k/tok512.bin");
  const auto tok = load_tokenizer(path);
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
      "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
      "She said, \"I want to play with your ball, but I can't find it.\"\n";
  Ids ids{1};
  const Ids body = tok->encode(story);
  ids.insert(ids.end(), body.begin(), body.end());
  EXPECT_EQ(tok->decode(ids), story);
}

TEST(Llama2cStories260k, C4DocumentsRoundTripAndMatchNaiveRunC) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(tok_path, "stories260k/tok512.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(corpus, "corpus/c4_demo.jsonl");
  const auto tok = load_tokenizer(tok_path);
  // The vocabulary as pieces, for the naive transcription of run.c.
  std::vector<Piece> vocab;
  {
    const std::string bytes = test::read_file(tok_path);
    std::size_t off = 4;
    while (off < bytes.size()) {
      float score;
      std::int32_t len;
      std::memcpy(&score, bytes.data() + off, 4);
      std::memcpy(&len, bytes.data() + off + 4, 4);
      vocab.push_back({bytes.substr(off + 8, static_cast<std::size_t>(len)), score});
      off += 8 + static_cast<std::size_t>(len);
    }
  }
  ASSERT_EQ(vocab.size(), 512u);
  std::ifstream in(corpus);
  std::string line;
  int docs = 0;
  while (docs < 20 && std::getline(in, line)) {
    const std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
    const Ids ids = tok->encode(text);
    EXPECT_EQ(tok->decode(ids), text) << "document " << docs;
    // The naive encoder is quadratic: compare on a prefix cut at a character boundary.
    std::size_t cut = std::min<std::size_t>(text.size(), 600);
    while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
      ++cut;
    const std::string prefix = text.substr(0, cut);
    EXPECT_EQ(tok->encode(prefix), naive_encode(vocab, prefix)) << "document " << docs;
    ++docs;
  }
  EXPECT_EQ(docs, 20);
}

TEST(Llama2cStories260k, AModelFileIsNotATokenizer) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "stories260k/stories260K.bin");
  try {
    load_tokenizer(path);
    FAIL() << "the model file loaded as a tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace anchorctx::data
