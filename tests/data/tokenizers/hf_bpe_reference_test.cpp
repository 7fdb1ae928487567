// HuggingFace tokenizer.json against `tokenizers` 0.23.3 on small files built here: the ids and
// texts below are what that library gives for the same JSON (Tokenizer.from_str, encode without
// special tokens, decode skipping them; encode(add_special_tokens=True) and transformers'
// AutoTokenizer for prompt bos). Each case is one that anchorctx once got wrong (probe 32).
#include <algorithm>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer.h"
#include "data/tokenizers/hf_bpe_regex.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using Ids = std::vector<std::int32_t>;
using json = nlohmann::json;

std::string utf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode: the character standing for each byte in byte-level tokens.
std::string byte_char(unsigned char b) {
  const auto printable = [](int x) {
    return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
  };
  if (printable(b)) return utf8(b);
  int n = 0;
  for (int x = 0; x < b; ++x)
    if (!printable(x)) ++n;
  return utf8(static_cast<char32_t>(256 + n));
}

std::string byte_level(const std::string& bytes) {
  std::string out;
  for (const char c : bytes)
    out += byte_char(static_cast<unsigned char>(c));
  return out;
}

// The 256 byte characters, ids in code point order (Python's sorted(ByteLevel.alphabet())).
json byte_level_vocab() {
  std::vector<std::pair<char32_t, std::string>> chars;
  for (int b = 0; b < 256; ++b) {
    const std::string s = byte_char(static_cast<unsigned char>(b));
    char32_t cp = 0;
    if (s.size() == 1)
      cp = static_cast<unsigned char>(s[0]);
    else
      cp = ((static_cast<unsigned char>(s[0]) & 0x1F) << 6) |
           (static_cast<unsigned char>(s[1]) & 0x3F);
    chars.emplace_back(cp, s);
  }
  std::sort(chars.begin(), chars.end());
  json vocab = json::object();
  for (std::size_t i = 0; i < chars.size(); ++i)
    vocab[chars[i].second] = static_cast<int>(i);
  return vocab;
}

json bpe_model(json vocab, json merges, const json& unk) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", unk},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", !unk.is_null()},
          {"byte_fallback", !unk.is_null()},
          {"ignore_merges", false},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

json byte_level_pre(bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", true},
          {"use_regex", use_regex}};
}

json split_then_byte_level(const std::string& pattern) {
  return {{"type", "Sequence"},
          {"pretokenizers", json::array({{{"type", "Split"},
                                          {"pattern", {{"Regex", pattern}}},
                                          {"behavior", "Isolated"},
                                          {"invert", false}},
                                         byte_level_pre(false)})}};
}

json tokenizer_json(json added, json normalizer, json pre, json post, json decoder, json model) {
  return {{"version", "1.0"},       {"truncation", nullptr},    {"padding", nullptr},
          {"added_tokens", added},  {"normalizer", normalizer}, {"pre_tokenizer", pre},
          {"post_processor", post}, {"decoder", decoder},       {"model", model}};
}

std::unique_ptr<Tokenizer> load(test::TempDir& dir, const std::string& name, const json& spec) {
  return load_tokenizer(dir.write(name, spec.dump()));
}

const std::string kMvs = utf8(0x180E);  // MONGOLIAN VOWEL SEPARATOR: Cf, not White_Space

TEST(HfBpeRegex, TranslatesTheEscapesOnigurumaReadsOtherwise) {
  using hf_bpe::translate_pattern;
  EXPECT_EQ(translate_pattern(R"(\s+(?!\S))"), R"(\p{White_Space}+(?!\P{White_Space}))");
  EXPECT_EQ(translate_pattern(R"([^\s\p{L}\p{N}]|[\S])"),
            R"([^\p{White_Space}\p{L}\p{N}]|[\P{White_Space}])");
  // An escaped backslash before 's', a quoted "\s", other escapes: unchanged.
  EXPECT_EQ(translate_pattern(R"(\\s\\\s)"), R"(\\s\\\p{White_Space})");
  EXPECT_EQ(translate_pattern(R"(\Q\s\E\s\Qa\\E)"), R"(\Q\s\E\p{White_Space}\Qa\\E)");
  EXPECT_EQ(translate_pattern(R"(\p{Ps}\d\w\x{180E}\c\s)"), R"(\p{Ps}\d\w\x{180E}\c\s)");
  EXPECT_EQ(translate_pattern("x\\"), "x\\");  // a trailing backslash is PCRE2's to refuse
  // Oniguruma's \h is a hex digit and \v the vertical tab (PCRE2: white space classes).
  EXPECT_EQ(translate_pattern(R"(\h+[\H]\v)"), R"(\p{AHex}+[\P{AHex}]\x{0B})");
  std::vector<std::pair<std::size_t, std::size_t>> found;
  hf_bpe::Regex(R"(\h+)").find_all("zz 0fA9 \t", found);
  EXPECT_EQ(found, (std::vector<std::pair<std::size_t, std::size_t>>{{3, 7}}));
  // Errors name the offset in the pattern as written.
  try {
    hf_bpe::Regex bad(R"(\s\s(x)");
    FAIL() << "an unbalanced pattern compiled";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at offset 6"), std::string::npos) << e.what();
  }
  // U+180E is not \s; the White_Space characters are.
  const hf_bpe::Regex space(R"(^\s+$)");
  EXPECT_FALSE(space.matches(kMvs));
  for (const char32_t c :
       {0x09, 0x0B, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x202F, 0x205F, 0x3000})
    EXPECT_TRUE(space.matches(utf8(c))) << std::hex << static_cast<int>(c);
  EXPECT_FALSE(space.matches(utf8(0x200B)));  // ZERO WIDTH SPACE: Cf
}

// U+180E was whitespace for every regex pre-tokenizer (PCRE2's \s), not for `tokenizers`
// (Oniguruma): " \u180e" is one pre-token there, merged here into id 258 by the merges below.
TEST(HfBpeTokenizer, MongolianVowelSeparatorIsNotWhitespace) {
  json vocab = byte_level_vocab();
  const std::string pair = " " + kMvs;
  json merges = json::array();
  for (std::size_t k = 1; k < pair.size(); ++k) {
    const std::string a = byte_level(pair.substr(0, k)), b = byte_level(pair.substr(k, 1));
    merges.push_back(json::array({a, b}));
    vocab[a + b] = static_cast<int>(vocab.size());
  }
  ASSERT_EQ(vocab[byte_level(pair)], 258);
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::vector<std::string> texts = {"x " + kMvs + "y", "x" + kMvs + " y", kMvs + kMvs + "  z",
                                          "a " + kMvs + "\n b", "p\\s q" + kMvs + "\\s"};
  // Each pipeline's ids for `texts`, from `tokenizers`.
  const std::vector<Ids> regex_ids = {{87, 258, 88},
                                      {87, 157, 254, 236, 220, 88},
                                      {157, 254, 236, 157, 254, 236, 220, 220, 89},
                                      {64, 258, 198, 220, 65},
                                      {79, 59, 82, 220, 80, 157, 254, 236, 59, 82}};
  const std::vector<Ids> split_ids = {{87, 220, 157, 254, 236, 88},
                                      {87, 157, 254, 236, 220, 88},
                                      {157, 254, 236, 157, 254, 236, 220, 220, 89},
                                      {64, 220, 157, 254, 236, 198, 220, 65},
                                      {79, 59, 82, 220, 80, 157, 254, 236, 59, 82}};
  const std::vector<std::tuple<std::string, json, const std::vector<Ids>*>> pipelines = {
      {"gpt2", byte_level_pre(true), &regex_ids},
      {"llama3", split_then_byte_level(llama3), &regex_ids},
      {"qwen2", split_then_byte_level(qwen2), &regex_ids},
      {"ws", split_then_byte_level(R"(\s+|[\S]+|\\s)"), &split_ids},
      {"notws", split_then_byte_level(R"([^\S\n]+|\Q\s\E)"), &split_ids}};
  const json decoder = {{"type", "ByteLevel"},
                        {"add_prefix_space", true},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  test::TempDir dir;
  for (const auto& [name, pre, want] : pipelines) {
    const auto tok = load(dir, name + ".json",
                          tokenizer_json(json::array(), nullptr, pre, nullptr, decoder,
                                         bpe_model(vocab, merges, nullptr)));
    for (std::size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(tok->encode(texts[i]), (*want)[i]) << name << ": text " << i;
      EXPECT_EQ(tok->decode((*want)[i]), texts[i]) << name << ": text " << i;
    }
  }
}

json added_token(const std::string& content, int id, bool special, bool normalized) {
  return {{"id", id},        {"content", content},       {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

// single_word tests its neighbours with Rust regex's \w (Alphabetic, marks, Nd, Pc,
// Join_Control), not PCRE2's (L, N, '_'); lstrip / rstrip strip White_Space, not U+180E.
TEST(HfBpeTokenizer, SingleWordUsesRustWordCharacters) {
  const json vocab = byte_level_vocab();
  json word = added_token("word", 256, false, false);
  word["single_word"] = true;
  json strip = added_token("<m>", 257, false, false);
  strip["lstrip"] = true;
  strip["rstrip"] = true;
  test::TempDir dir;
  const auto tok =
      load(dir, "single_word.json",
           tokenizer_json(json::array({word, strip}), nullptr, byte_level_pre(true), nullptr,
                          byte_level_pre(true), bpe_model(vocab, json::array(), nullptr)));
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"word" + utf8(0x0301), {86, 78, 81, 67, 136, 223}},       // combining mark: word
      {"word" + utf8(0x00B2), {256, 126, 110}},                  // superscript two (No): not
      {utf8(0x200D) + "word", {158, 222, 235, 86, 78, 81, 67}},  // ZWJ (Join_Control): word
      {"word" + utf8(0x203F), {86, 78, 81, 67, 158, 222, 123}},  // undertie (Pc): word
      {"x word y", {87, 220, 256, 220, 88}},                     //
      {utf8(0x2167) + "word", {158, 227, 100, 86, 78, 81, 67}},  // roman numeral (Nl): word
      {"_word", {62, 86, 78, 81, 67}},                           //
      {"a" + kMvs + "<m>" + kMvs + "b", {64, 157, 254, 236, 257, 157, 254, 236, 65}},
      {"a" + utf8(0x2000) + "<m>" + utf8(0x2000) + "b", {64, 257, 65}},
  };
  for (const auto& [text, want] : cases)
    EXPECT_EQ(tok->encode(text), want) << "'" << text << "'";
}

// A Llama-2 / Mistral legacy pipeline (Prepend "▁" + Replace " " -> "▁", no pre-tokenizer, the
// SentencePiece-style decoder) with added tokens, as tokenizer.add_tokens writes them.
json legacy_spm_with_added_tokens() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  for (const char* t : {"\xE2\x96\x81", "a", "b",
                        "\xE2\x96\x81"
                        "a",
                        "\xE2\x96\x81"
                        "b"})
    vocab[t] = static_cast<int>(vocab.size());
  const json merges =
      json::array({json::array({"\xE2\x96\x81", "a"}), json::array({"\xE2\x96\x81", "b"})});
  const json added =
      json::array({added_token("<unk>", 0, true, false), added_token("<s>", 1, true, false),
                   added_token("</s>", 2, true, false), added_token("<custom>", 264, false, true),
                   added_token("x y", 265, false, true), added_token("<sp>", 266, true, true),
                   added_token("<raw>", 267, false, false)});
  const json normalizer = {
      {"type", "Sequence"},
      {"normalizers",
       json::array(
           {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}};
  const json decoder = {
      {"type", "Sequence"},
      {"decoders",
       json::array(
           {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  return tokenizer_json(added, normalizer, nullptr, nullptr, decoder,
                        bpe_model(vocab, merges, "<unk>"));
}

// `tokenizers` decodes a normalized added token as its normalized content ("▁<custom>"), and
// skips a token as special when that text is a special token's content: the normalized special
// "<sp>" ("▁<sp>") is kept. The raw content lost the space before the token.
TEST(HfBpeTokenizer, NormalizedAddedTokenDecodesItsNormalizedContent) {
  test::TempDir dir;
  const auto tok = load(dir, "legacy_added.json", legacy_spm_with_added_tokens());
  const std::vector<std::tuple<std::string, Ids, std::string>> cases = {
      {"a <custom> b", {262, 264, 263}, "a <custom> b"},
      {"<custom>", {264}, "<custom>"},
      {"a x y b", {262, 265, 263}, "a x y b"},
      {"x y", {265}, "x y"},
      {"a <raw> b", {262, 259, 267, 259, 263}, "a <raw>  b"},
      {"a <sp> b", {262, 266, 263}, "a <sp> b"},
  };
  for (const auto& [text, ids, decoded] : cases) {
    EXPECT_EQ(tok->encode(text), ids) << "'" << text << "'";
    EXPECT_EQ(tok->decode(ids), decoded) << "'" << text << "'";
  }
  // Special tokens that normalization leaves alone are still dropped.
  EXPECT_EQ(tok->decode(Ids{1, 262, 2}), "a");
}

// A tokenizer.json whose post-processor adds no bos: `tokenizers`' encode(add_special_tokens=True)
// and transformers' AutoTokenizer give [7] for "hi"; the <s> found by name stays the tokenizer's
// bos (pack's anchor) but prompts do not start with it.
TEST(HfBpeTokenizer, PromptBosFollowsThePostProcessor) {
  const std::string m = "\xE2\x96\x81";
  const json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2},  {m, 3},
                      {"h", 4},     {"i", 5},   {m + "h", 6}, {m + "hi", 7}};
  const json merges = json::array({json::array({m, "h"}), json::array({m + "h", "i"})});
  const json added =
      json::array({added_token("<unk>", 0, true, false), added_token("<s>", 1, true, false),
                   added_token("</s>", 2, true, false)});
  const json metaspace = {
      {"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "first"}, {"split", false}};
  json spec = tokenizer_json(added, nullptr, metaspace, nullptr, metaspace,
                             bpe_model(vocab, merges, "<unk>"));
  test::TempDir dir;
  {
    const auto tok = load(dir, "no_template.json", spec);
    EXPECT_EQ(tok->encode("hi"), Ids{7});
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->prompt_bos_id(), std::nullopt);
    // pack's anchor is still that bos.
    PackConfig c;
    c.tokenizer = dir.file("no_template.json");
    c.inputs = {dir.write("docs.jsonl", "{\"text\": \"hi hi hi\"}\n{\"text\": \"hi\"}\n")};
    c.out = dir.file("packed");
    c.seq_len = 3;
    c.quiet = true;
    c.threads = 1;
    const json summary = pack_dataset(c);
    EXPECT_EQ(summary.at("anchor_id"), 1);
  }
  {
    spec["post_processor"] = {{"type", "ByteLevel"},
                              {"add_prefix_space", true},
                              {"trim_offsets", false},
                              {"use_regex", true}};
    const auto tok = load(dir, "byte_level_post.json", spec);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->prompt_bos_id(), std::nullopt);
  }
  {
    const json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
    const json seq = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
    json special = json::object();
    special["<s>"] = {{"id", "<s>"}, {"ids", json::array({1})}, {"tokens", json::array({"<s>"})}};
    spec["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", json::array({bos, seq})},
                              {"pair", json::array({bos, seq})},
                              {"special_tokens", special}};
    const auto tok = load(dir, "template.json", spec);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->prompt_bos_id(), 1);
  }
  {
    // RoBERTa's post-processor puts cls first.
    spec["post_processor"] = {{"type", "RobertaProcessing"},
                              {"sep", json::array({"</s>", 2})},
                              {"cls", json::array({"<s>", 1})},
                              {"trim_offsets", true},
                              {"add_prefix_space", false}};
    const auto tok = load(dir, "roberta.json", spec);
    EXPECT_EQ(tok->prompt_bos_id(), 1);
  }
  // The other kinds start prompts with their bos.
  const auto byte = make_byte_tokenizer();
  EXPECT_EQ(byte->prompt_bos_id(), byte->bos_id());
}

}  // namespace
}  // namespace anchorctx::data
