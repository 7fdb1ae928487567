// The byte tokenizer as HuggingFace files (tokenizer_files.h).
//
// Why this tokenizer.json encodes exactly as the byte tokenizer, for any text:
// - pre_tokenizer ByteLevel (use_regex false, no prefix space) maps each byte of the text to one
//   character by GPT-2's table; without the regex the whole text is one word.
// - model BPE whose vocabulary is those 256 characters, id = byte value, and no merges: each
//   character stays its own token.
// - <bos>, <eos>, <pad> (256..258) are vocabulary entries, not added tokens: added tokens are
//   matched inside the text, so a text holding the characters "<bos>" would get id 256 where the
//   byte tokenizer gives the five bytes. Being multi-character entries with no merges to build
//   them, no text can produce them. transformers registers the special tokens named in
//   tokenizer_config.json as added tokens when it loads the folder; "split_special_tokens"
//   true keeps it from matching them in text, so it still gives the bytes.
// - post_processor TemplateProcessing "<bos> $A": ids with add_special_tokens (transformers'
//   default) are `anchorctx tokenize`'s (bos first); without, they are encode()'s.
// - decoder ByteLevel turns the characters back into bytes.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/data/tokenizer_files.h"

namespace anchorctx::data {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kBos = "<bos>";
constexpr const char* kEos = "<eos>";
constexpr const char* kPad = "<pad>";

// GPT-2's byte-to-character table: printable bytes (33..126, 161..172, 174..255) stand for
// themselves; the others take the code points 256, 257, ... in byte order.
std::u32string byte_characters() {
  std::u32string table(256, U'\0');
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    table[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

std::string utf8_of(char32_t c) {
  std::string out;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    fail("byte_tokenizer_hf: code point {} is outside the byte table", static_cast<unsigned>(c));
  }
  return out;
}

// The pre-tokenizer and decoder: bytes to characters and back, the text one word.
json byte_level() {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", false},
          {"trim_offsets", false},
          {"use_regex", false}};
}

std::string tokenizer_json() {
  const std::unique_ptr<Tokenizer> byte = make_byte_tokenizer();
  const std::u32string table = byte_characters();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[utf8_of(table[static_cast<std::size_t>(b)])] = b;
  vocab[kBos] = *byte->bos_id();
  vocab[kEos] = *byte->eos_id();
  vocab[kPad] = *byte->pad_id();

  const json bos_piece = {{"SpecialToken", {{"id", kBos}, {"type_id", 0}}}};
  json post = {
      {"type", "TemplateProcessing"},
      {"single", json::array({bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array({bos_piece,
                            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                            {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens",
       {{kBos, {{"id", kBos}, {"ids", json::array({*byte->bos_id()})}, {"tokens", {kBos}}}}}}};

  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", json::array()}};
  json j = {{"version", "1.0"},       {"truncation", nullptr},
            {"padding", nullptr},     {"added_tokens", json::array()},
            {"normalizer", nullptr},  {"pre_tokenizer", byte_level()},
            {"post_processor", post}, {"decoder", byte_level()},
            {"model", model}};
  return j.dump(2) + "\n";
}

std::string tokenizer_config_json() {
  const std::unique_ptr<Tokenizer> byte = make_byte_tokenizer();
  json decoder = json::object();
  for (const auto& [name, id] : {std::pair{kBos, *byte->bos_id()}, std::pair{kEos, *byte->eos_id()},
                                 std::pair{kPad, *byte->pad_id()}}) {
    decoder[std::to_string(id)] = {{"content", name}, {"lstrip", false},      {"normalized", false},
                                   {"rstrip", false}, {"single_word", false}, {"special", true}};
  }
  json j = {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"bos_token", kBos},
            {"eos_token", kEos},
            {"pad_token", kPad},
            {"unk_token", nullptr},
            {"add_bos_token", true},
            {"add_eos_token", false},
            {"clean_up_tokenization_spaces", false},
            {"split_special_tokens", true},
            {"model_max_length", 1000000000000000019884624838656.0},
            {"added_tokens_decoder", decoder},
            {"anchorctx_tokenizer", "byte"}};
  return j.dump(2) + "\n";
}

std::string special_tokens_map_json() {
  const json j = {{"bos_token", kBos}, {"eos_token", kEos}, {"pad_token", kPad}};
  return j.dump(2) + "\n";
}

}  // namespace

std::vector<TokenizerFile> byte_tokenizer_hf_files() {
  return {{"tokenizer.json", tokenizer_json()},
          {"tokenizer_config.json", tokenizer_config_json()},
          {"special_tokens_map.json", special_tokens_map_json()}};
}

std::vector<std::filesystem::path> tokenizer_source_files(std::string_view spec) {
  namespace fs = std::filesystem;
  if (spec == "byte") return {};
  const fs::path path(spec);
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {path};
  require(fs::is_directory(path, ec),
          "tokenizer '{}': neither 'byte' nor an existing file or folder", std::string(spec));
  std::vector<fs::path> files;
  // The one load_tokenizer picks, then the side files transformers reads.
  if (const auto file = folder_tokenizer_file(path)) files.push_back(*file);
  require(!files.empty(),
          "tokenizer '{}': a folder without tokenizer.json, tokenizer.model or tokenizer.bin",
          std::string(spec));
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"})
    if (fs::is_regular_file(path / name, ec)) files.push_back(path / name);
  return files;
}

std::string tokenizer_file_name(std::string_view kind) {
  if (kind == "hf_bpe") return "tokenizer.json";
  if (kind == "sentencepiece") return "tokenizer.model";
  if (kind == "llama2c") return "tokenizer.bin";
  fail("a tokenizer of kind '{}' has no file name in a model folder", std::string(kind));
}

}  // namespace anchorctx::data
