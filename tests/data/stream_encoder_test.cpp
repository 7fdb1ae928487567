// StreamEncoder: a text encoded piece by piece at the tokenizers' safe cuts gives exactly the ids
// of the whole text, for every tokenizer kind, on generated text (always) and on the real corpus
// and tokenizers of ../shared/data (skipped when absent), with pieces forced down to a few bytes
// and the text fed in blocks that split UTF-8 characters.
#include "anchorctx/data/stream_encoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/tokenizer_files.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using Ids = std::vector<std::int32_t>;

// Generated prose and key-value lines, with what real text also holds: runs of spaces, tabs,
// blank lines, non-ASCII letters and punctuation, digits.
std::string generated_text(std::size_t documents) {
  BuiltinCorpusOptions options;
  options.documents = static_cast<std::int64_t>(documents);
  options.seed = 77;
  std::string text;
  const char* extras[] = {"  double  spaces ",
                          "\ttab\t",
                          "\n\n\n",
                          " caf\xc3\xa9 na\xc3\xafve ",
                          " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ",
                          " \xe2\x80\x94 ",
                          "x  ",
                          " 12345 "};
  std::size_t i = 0;
  for (const std::string& doc : builtin_corpus(options)) {
    text += doc;
    text += extras[i++ % std::size(extras)];
  }
  return text;
}

struct Result {
  Ids ids;
  std::size_t pieces = 0;
  std::size_t peak = 0;
};

// `text` through a StreamEncoder of `piece_bytes`, fed in blocks of random sizes (1 .. 3 x
// piece_bytes, so blocks cut UTF-8 characters too).
Result stream(const Tokenizer& tok, std::string_view text, std::size_t piece_bytes,
              std::uint64_t seed) {
  Result r;
  StreamEncoder encoder(
      tok,
      [&](std::span<const std::int32_t> ids) {
        r.ids.insert(r.ids.end(), ids.begin(), ids.end());
        ++r.pieces;
      },
      piece_bytes);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> block(1, 3 * piece_bytes);
  while (!text.empty()) {
    const std::size_t n = std::min(text.size(), block(rng));
    encoder.feed(text.substr(0, n));
    text.remove_prefix(n);
  }
  encoder.finish();
  r.peak = encoder.peak_buffered();
  return r;
}

// The first index where two id lists differ, for a readable failure.
std::string first_difference(const Ids& a, const Ids& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i])
    ++i;
  return fmt::format("{} vs {} ids, first difference at {}", a.size(), b.size(), i);
}

// Chunked == whole at each piece size; `expect_cuts` says whether the kind must actually have
// cut (more than one piece) on this text.
void expect_same_ids(const Tokenizer& tok, const std::string& text,
                     std::initializer_list<std::size_t> piece_sizes, bool expect_cuts) {
  const Ids whole = tok.encode(text);
  for (const std::size_t piece : piece_sizes) {
    SCOPED_TRACE(fmt::format("{} tokenizer, {} bytes of text, pieces of {} bytes", tok.kind(),
                             text.size(), piece));
    const Result r = stream(tok, text, piece, piece * 31 + 7);
    EXPECT_TRUE(r.ids == whole) << first_difference(r.ids, whole);
    if (expect_cuts) {
      EXPECT_GT(r.pieces, text.size() / (8 * piece + 256)) << "too few safe cuts";
    }
    EXPECT_EQ(encode_in_pieces(tok, text, piece), whole);
  }
}

void put_i32(std::string& out, std::int32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((static_cast<std::uint32_t>(v) >> (8 * i)) & 0xFF));
}

// A llama2.c tokenizer.bin learned crudely from `text`: specials, byte fallback, every printable
// ASCII character, then its most frequent 2..5-byte ASCII strings with spaces only in front (as
// SentencePiece's), scored by frequency, plus pieces that hold a space inside or at the end
// ("e t", "s ", "  ", "\n\n"), which take those pairs out of the cut points.
std::string learned_llama2c_file(const std::string& text) {
  std::map<std::string, int> counts;
  for (std::size_t i = 0; i + 5 < text.size() && i < 200000; ++i) {
    for (std::size_t n = 2; n <= 5; ++n) {
      const std::string s = text.substr(i, n);
      const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; });
      const bool ascii_after_space = s[0] == ' ' && std::all_of(s.begin() + 1, s.end(), [](char c) {
                                       return c > ' ' && c < 127;
                                     });
      if (ascii || ascii_after_space) ++counts[s];
    }
  }
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [s, c] : counts)
    ranked.emplace_back(c, s);
  std::sort(ranked.rbegin(), ranked.rend());
  ranked.resize(std::min<std::size_t>(ranked.size(), 400));
  std::vector<std::pair<std::string, float>> pieces = {
      {"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int b = 0; b < 256; ++b)
    pieces.emplace_back(fmt::format("<0x{:02X}>", b), 0.0f);
  for (int c = 32; c < 127; ++c)
    pieces.emplace_back(std::string(1, static_cast<char>(c)), -1.0f);
  for (const auto& [count, s] : ranked)
    pieces.emplace_back(s, static_cast<float>(count % 97));  // many equal scores: ties too
  for (const char* s : {"e t", "s ", "  ", "\n\n"})
    pieces.emplace_back(s, 50.0f);
  std::string out;
  put_i32(out, 16);
  for (const auto& [s, score] : pieces) {
    std::uint32_t bits;
    std::memcpy(&bits, &score, 4);
    put_i32(out, static_cast<std::int32_t>(bits));
    put_i32(out, static_cast<std::int32_t>(s.size()));
    out += s;
  }
  return out;
}

TEST(StreamEncoder, ByteTokenizerCutsAnywhereAndKeepsTheIds) {
  const auto tok = make_byte_tokenizer();
  const std::string text = generated_text(60);
  expect_same_ids(*tok, text, {1, 3, 64, 4096}, true);
  const Result r = stream(*tok, text, 64, 1);
  EXPECT_LE(r.peak, 64u + 3 * 64u) << "the buffer grew past a piece and a fed block";
}

TEST(StreamEncoder, Llama2cCutsOnlyWhereNoPieceJoinsTheBytesAndKeepsTheIds) {
  const std::string text = generated_text(60);
  test::TempDir dir;
  const auto tok = load_tokenizer(dir.write("tok.bin", learned_llama2c_file(text)));
  ASSERT_EQ(tok->kind(), "llama2c");
  expect_same_ids(*tok, text, {1, 5, 64, 4096}, true);
  // "e t" is a piece: neither of its two pairs is ever cut.
  EXPECT_EQ(tok->stream_cut("ge t", 2), 0u);
}

TEST(StreamEncoder, SentencePieceCutsAtSingleSpacesAndKeepsTheIds) {
  const auto tok = load_tokenizer(
      (std::filesystem::path(ANCHORCTX_TESTS_DIR) / "data" / "fixtures" / "spm_bpe.model")
          .string());
  const std::string text = generated_text(40);
  expect_same_ids(*tok, text, {1, 9, 64, 4096}, true);
  EXPECT_EQ(tok->stream_cut("ab cd", 0), 2u);
  EXPECT_EQ(tok->stream_cut("ab  cd", 0), 0u);  // a run of spaces is never cut
  EXPECT_EQ(tok->stream_cut("ab c", 0), 2u);
  EXPECT_EQ(tok->stream_cut("ab ", 0), 0u);  // what follows the space is not known yet
}

std::unique_ptr<Tokenizer> hf_fixture(const char* name) {
  return load_tokenizer(
      (std::filesystem::path(ANCHORCTX_TESTS_DIR) / "data" / "fixtures" / name).string());
}

// Random text built to be hard on the cuts: long runs of spaces, newlines, digits, letters
// without any whitespace, punctuation, contractions, CJK, combining accents (NFC), the
// metaspace character itself, an emoji, \r\n, tabs, added tokens' contents ([MARK] strips the
// spaces around it, "hello" is a single_word token), and now and then a byte that is not UTF-8.
std::string adversarial_text(std::uint64_t seed, std::size_t bytes) {
  static const char* const kBits[] = {" ",
                                      "  ",
                                      "        ",
                                      "\n",
                                      "\n\n\n",
                                      "\r\n",
                                      "\t",
                                      "0",
                                      "1234567",
                                      "abc",
                                      "Word",
                                      "x",
                                      "'s",
                                      "'LL",
                                      "!",
                                      "?!.",
                                      "--",
                                      ",",
                                      "\xe6\x97\xa5\xe6\x9c\xac",
                                      "e\xcc\x81",
                                      "\xe2\x96\x81",
                                      "\xf0\x9f\x98\x80",
                                      "[MARK]",
                                      "hello",
                                      "<tool>",
                                      "<|endoftext|>",
                                      "\xff",
                                      "\xc3",
                                      "\xc3\xa9",
                                      " a"};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    const char* bit = kBits[rng() % std::size(kBits)];
    const std::size_t repeat = rng() % 8 == 0 ? 1 + rng() % 200 : 1;  // long runs now and then
    for (std::size_t i = 0; i < repeat; ++i)
      s += bit;
  }
  return s;
}

TEST(StreamEncoder, HfBpeCutsBeforeSpacesAndKeepsTheIds) {
  // GPT-2-like (ByteLevel with its regex), LLaMA-3 and Qwen2 (Split by their regexes, NFC for
  // Qwen2) cut; the SentencePiece-style ones (a Prepend normalizer; Metaspace without split)
  // have no proved cut and encode whole texts, with the same ids.
  for (const auto& [name, cuts] :
       std::vector<std::pair<const char*, bool>>{{"hf_bpe_gpt2ish.json", true},
                                                 {"hf_bpe_llama3.json", true},
                                                 {"hf_bpe_qwen2.json", true},
                                                 {"hf_bpe_spm.json", false},
                                                 {"hf_bpe_spm_metaspace.json", false}}) {
    SCOPED_TRACE(name);
    const auto tok = hf_fixture(name);
    expect_same_ids(*tok, generated_text(10), {16, 4096}, cuts);
    for (std::uint64_t seed = 1; seed <= 6; ++seed)
      expect_same_ids(*tok, adversarial_text(seed, 20000), {5, 64, 1000}, false);
  }
}

TEST(StreamEncoder, HfBpeCutsOnlyAfterAPrintableAsciiCharacterNotEndingAStrippingToken) {
  const auto gpt2ish = hf_fixture("hf_bpe_gpt2ish.json");
  EXPECT_EQ(gpt2ish->stream_cut("ab cd", 0), 2u);
  EXPECT_EQ(gpt2ish->stream_cut("ab cd ef", 0), 5u);  // the last one
  EXPECT_EQ(gpt2ish->stream_cut("ab cd ef", 3), 5u);
  EXPECT_EQ(gpt2ish->stream_cut("ab cd ef", 6), 0u);        // none at or after `from`
  EXPECT_EQ(gpt2ish->stream_cut("a  b", 0), 1u);            // not inside a run of spaces
  EXPECT_EQ(gpt2ish->stream_cut("a\n \xc3\xa9 c", 0), 0u);  // not after \n or a non-ASCII byte
  EXPECT_EQ(gpt2ish->stream_cut("[MARK] x", 0), 0u);        // [MARK] swallows the spaces after it
  EXPECT_EQ(gpt2ish->stream_cut("x] y", 0), 0u);            // nor after any ']' then
  EXPECT_EQ(gpt2ish->stream_cut(" ab", 0), 0u);             // a cut needs text before it
  EXPECT_EQ(hf_fixture("hf_bpe_spm.json")->stream_cut("ab cd", 0), 0u);
}

TEST(StreamEncoder, TheByteTokenizersTokenizerJsonCutsAnywhere) {
  // The byte tokenizer written as a model folder's tokenizer.json: each byte its own token.
  test::TempDir dir;
  for (const TokenizerFile& f : byte_tokenizer_hf_files())
    dir.write(f.name, f.content);
  const auto tok = load_tokenizer(dir.path().string());
  ASSERT_EQ(tok->kind(), "hf_bpe");
  EXPECT_EQ(tok->stream_cut("abc", 0), 2u);
  for (std::uint64_t seed = 1; seed <= 3; ++seed)
    expect_same_ids(*tok, adversarial_text(seed, 20000), {5, 1000}, true);
  // A GPT-2-like model with merges behind the same pre-tokenizer does not.
  EXPECT_EQ(hf_fixture("hf_bpe_gpt2ish.json")->stream_cut("abc", 0), 0u);
}

TEST(StreamEncoder, HfBpeTextWithoutACutIsHeldWhole) {
  // Documented fallback: a stretch without a safe cut (CJK text without spaces, digits) is
  // buffered until the next cut or the end, so the ids stay exact and memory grows with the
  // stretch.
  const auto tok = hf_fixture("hf_bpe_qwen2.json");
  std::string text = "start here ";
  for (int i = 0; i < 20000; ++i)
    text += i % 3 == 0 ? "\xe6\x97\xa5" : "7";
  text += " then words again and again";
  const Result r = stream(*tok, text, 1000, 3);
  EXPECT_EQ(r.ids, tok->encode(text));
  EXPECT_GE(r.peak, 20000u);
}

TEST(StreamEncoder, RealCorpusWithRealTokenizers) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(wiki, "corpus/wiki_demo.txt");
  ANCHORCTX_SHARED_DATA_OR_SKIP(c4, "corpus/c4_demo.jsonl");
  ANCHORCTX_SHARED_DATA_OR_SKIP(llama2c, "stories260k/tok512.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(spm, "tokenizers/llama2-spm/tokenizer.model");
  ANCHORCTX_SHARED_DATA_OR_SKIP(gpt2, "tokenizers/gpt2/tokenizer.json");
  std::string text = test::read_file(wiki);
  text += test::read_file(c4).substr(0, 400000);
  const std::string head = text.substr(0, 200000);  // tiny pieces: many encodes, so less text
  for (const std::string& spec : {std::string("byte"), llama2c, spm}) {
    const auto tok = load_tokenizer(spec);
    expect_same_ids(*tok, head, {7, 4096}, true);
    expect_same_ids(*tok, text, {65536}, true);
  }
  const auto gpt2_tok = load_tokenizer(gpt2);
  expect_same_ids(*gpt2_tok, text.substr(0, 300000), {64, 65536}, true);
  for (std::uint64_t seed = 1; seed <= 3; ++seed)
    expect_same_ids(*gpt2_tok, adversarial_text(seed, 50000), {7, 1000}, false);
}

}  // namespace
}  // namespace anchorctx::data
