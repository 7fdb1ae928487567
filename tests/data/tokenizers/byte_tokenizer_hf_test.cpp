// The byte tokenizer written as HuggingFace files (tokenizer_files.h): our own tokenizer.json
// loader, and transformers / tokenizers when the Python side has them, encode every text exactly
// as the byte tokenizer does.
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/utf8.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/data/tokenizer_files.h"
#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using anchorctx::test::TempDir;

void write_files(const TempDir& dir) {
  for (const TokenizerFile& f : byte_tokenizer_hf_files())
    dir.write(f.name, f.content);
}

// Texts that could trip a byte-level tokenizer: ASCII with spaces and newlines (a regex
// pre-tokenizer would split them), multi-byte UTF-8, the special tokens' names as plain text,
// and invalid UTF-8 of every kind (lone continuation, truncated sequence, overlong, surrogate,
// bytes never valid).
std::vector<std::string> valid_texts() {
  return {"",
          "Hello, world!",
          "  leading and trailing spaces  \n\ttabs\r\n",
          "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 emoji",
          "<bos>text<eos> and <pad>, </s> <s> <|endoftext|>",
          "key 4821 is apple.\nwhat is key 4821? apple",
          std::string("nul \0 inside", 12)};
}

std::vector<std::string> invalid_texts() {
  return {"\x80", "\xc3", "\xe6\x97", "\xc0\xaf", "\xed\xa0\x80", "\xff\xfe\xfd", "ok \xf5\x80 ok"};
}

TEST(ByteTokenizerHf, OurLoaderEncodesEveryTextAsTheByteTokenizer) {
  const TempDir dir;
  write_files(dir);
  const auto hf = load_tokenizer(dir.path().string());
  const auto byte = make_byte_tokenizer();
  EXPECT_EQ(hf->kind(), "hf_bpe");
  EXPECT_EQ(hf->vocab_size(), byte->vocab_size());
  EXPECT_EQ(hf->bos_id(), byte->bos_id());
  EXPECT_EQ(hf->eos_id(), byte->eos_id());
  EXPECT_EQ(hf->pad_id(), byte->pad_id());

  std::vector<std::string> texts = valid_texts();
  for (const std::string& t : invalid_texts())
    texts.push_back(t);
  std::string all;  // every byte value, twice in a row
  for (int b = 0; b < 256; ++b)
    all.append(2, static_cast<char>(b));
  texts.push_back(all);
  std::mt19937 gen(20261202);  // random byte strings, mostly invalid UTF-8
  std::uniform_int_distribution<int> byte_value(0, 255), length(1, 300);
  for (int i = 0; i < 50; ++i) {
    std::string t(static_cast<std::size_t>(length(gen)), '\0');
    for (char& c : t)
      c = static_cast<char>(byte_value(gen));
    texts.push_back(t);
  }
  for (const std::string& t : texts) {
    SCOPED_TRACE(nlohmann::json(t).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    const std::vector<std::int32_t> ids = hf->encode(t);
    EXPECT_EQ(ids, byte->encode(t));
    // Decoding gives text: valid UTF-8 comes back as it was; invalid bytes become U+FFFD, as
    // `tokenizers` decodes (the ids above are still the bytes).
    if (core::is_valid_utf8(t)) {
      EXPECT_EQ(hf->decode(ids), t);
    }
  }
  // The special ids are vocabulary entries (not added tokens, which would be matched in text),
  // so a tokenizer.json decoder spells them out, as the `tokenizers` library does;
  // transformers drops them with skip_special_tokens (the Python check below).
  const std::vector<std::int32_t> with_special{256, 104, 258, 105, 257};
  EXPECT_EQ(hf->decode(with_special), "<bos>h<pad>i<eos>");
}

TEST(ByteTokenizerHf, SourceFilesOfEachSpec) {
  EXPECT_TRUE(tokenizer_source_files("byte").empty());
  const TempDir dir;
  write_files(dir);
  const auto files = tokenizer_source_files(dir.path().string());
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].filename(), "tokenizer.json");  // the tokenizer first, then side files
  EXPECT_EQ(files[1].filename(), "tokenizer_config.json");
  EXPECT_EQ(files[2].filename(), "special_tokens_map.json");
  EXPECT_EQ(tokenizer_source_files(dir.file("tokenizer.json")).size(), 1u);
  EXPECT_NE(anchorctx::test::error_of([&] {
              tokenizer_source_files(dir.file("missing.model"));
            }).find("missing.model"),
            std::string::npos);
  const TempDir empty;
  EXPECT_NE(anchorctx::test::error_of([&] {
              tokenizer_source_files(empty.path().string());
            }).find("without tokenizer.json"),
            std::string::npos);
}

std::string python_exe() {
  const char* env = std::getenv("ANCHORCTX_PYTHON");
  return env && *env ? env : "python3";
}

// transformers' AutoTokenizer and the tokenizers library load the folder and give the byte
// tokenizer's ids (with bos first when special tokens are added, as `anchorctx tokenize` does).
// Python strings are Unicode, so only valid UTF-8 can be passed there; invalid bytes are covered
// by the test above.
TEST(ByteTokenizerHf, TransformersEncodesAsTheByteTokenizer) {
  const std::string python = python_exe();
  if (std::system((python + " -c 'import tokenizers, transformers' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python
                 << " cannot import tokenizers and transformers (set ANCHORCTX_PYTHON to a "
                    "Python with `pip install tokenizers transformers`)";
  const TempDir dir;
  write_files(dir);
  const auto byte = make_byte_tokenizer();
  nlohmann::json cases = nlohmann::json::array();
  std::vector<std::string> texts = valid_texts();
  std::string every_character;  // every ASCII byte and a run of 2-, 3- and 4-byte characters
  for (int b = 1; b < 128; ++b)
    every_character.push_back(static_cast<char>(b));
  every_character += "\xc2\xa0\xc2\xad\xc3\xbf\xc4\x80\xe2\x82\xac\xef\xbf\xbd\xf0\x90\x80\x80";
  texts.push_back(every_character);
  for (const std::string& t : texts)
    cases.push_back({{"text", t}, {"ids", byte->encode(t)}});
  const nlohmann::json expected = {
      {"cases", cases}, {"bos", 256}, {"eos", 257}, {"pad", 258}, {"vocab_size", 259}};
  const std::string expected_path = dir.write("expected.json", expected.dump());
  const std::string script =
      std::string(ANCHORCTX_TESTS_DIR) + "/data/tokenizers/check_hf_byte_tokenizer.py";
  const std::string command =
      python + " " + script + " " + dir.path().string() + " " + expected_path + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

}  // namespace
}  // namespace anchorctx::data
