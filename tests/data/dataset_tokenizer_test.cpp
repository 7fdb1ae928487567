// A packed dataset read through a model's tokenizer: the same ids (the byte tokenizer and its
// tokenizer.json, two files of one vocabulary) are taken; another tokenizer is refused by name.
#include "anchorctx/data/dataset_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer_files.h"
#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using test::TempDir;

const std::string kFixtures = std::string(ANCHORCTX_TESTS_DIR) + "/data/fixtures";

std::filesystem::path pack_with(const TempDir& dir, const std::string& tokenizer,
                                const std::string& name) {
  PackConfig c;
  c.tokenizer = tokenizer;
  c.seq_len = 32;
  c.quiet = true;
  c.threads = 1;
  c.inputs = {kFixtures + "/small_corpus.jsonl"};
  c.out = dir.file(name);
  pack_dataset(c);
  return c.out;
}

TEST(DatasetTokenizer, SameIdsAcrossFilesOfOneVocabularyOnly) {
  const TempDir dir;
  for (const TokenizerFile& f : byte_tokenizer_hf_files())
    dir.write("byte_hf/" + f.name, f.content);
  const auto byte = make_byte_tokenizer();
  const auto byte_json = load_tokenizer(dir.file("byte_hf"));
  EXPECT_NE(byte->content_hash(), byte_json->content_hash());
  EXPECT_TRUE(same_token_ids(*byte, *byte_json));
  const auto qwen = load_tokenizer(kFixtures + "/hf_bpe_qwen2.json");
  const auto llama3 = load_tokenizer(kFixtures + "/hf_bpe_llama3.json");
  EXPECT_FALSE(same_token_ids(*byte, *qwen));
  EXPECT_FALSE(same_token_ids(*qwen, *llama3));
  EXPECT_TRUE(same_token_ids(*qwen, *load_tokenizer(kFixtures + "/hf_bpe_qwen2.json")));
}

TEST(DatasetTokenizer, RefusesADatasetOfAnotherTokenizerByName) {
  const TempDir dir;
  for (const TokenizerFile& f : byte_tokenizer_hf_files())
    dir.write("byte_hf/" + f.name, f.content);
  const Dataset bytes = Dataset::open(pack_with(dir, "byte", "bytes"));
  // The byte tokenizer's tokenizer.json (a model folder the demo writes) reads it as packed.
  EXPECT_EQ(test::error_of([&] {
              require_dataset_tokenizer(bytes, *load_tokenizer(dir.file("byte_hf")), "eval",
                                        "model");
            }),
            "");
  const auto qwen = load_tokenizer(kFixtures + "/hf_bpe_qwen2.json");
  const std::string e =
      test::error_of([&] { require_dataset_tokenizer(bytes, *qwen, "eval", "qwen-model"); });
  EXPECT_NE(e.find("eval: " + bytes.path().string() + " was packed with another tokenizer (byte"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("than qwen-model's (hf_bpe"), std::string::npos) << e;
  // A dataset of a tokenizer file: the same file is taken by hash, another by its ids.
  const Dataset qwen_data = Dataset::open(pack_with(dir, kFixtures + "/hf_bpe_qwen2.json", "qwen"));
  EXPECT_EQ(test::error_of([&] { require_dataset_tokenizer(qwen_data, *qwen, "eval", "m"); }), "");
  EXPECT_NE(test::error_of([&] {
              require_dataset_tokenizer(
                  qwen_data, *load_tokenizer(kFixtures + "/hf_bpe_llama3.json"), "train", "m");
            }).find("train: "),
            std::string::npos);
}

// meta.json's tokenizer record is optional: without it the vocabulary sizes are compared (it was
// read with at(): nlohmann's "key 'content_hash' not found").
TEST(DatasetTokenizer, ADatasetWithoutATokenizerRecordIsComparedByVocabulary) {
  const TempDir dir;
  const std::filesystem::path packed = pack_with(dir, "byte", "bytes");
  nlohmann::json meta = nlohmann::json::parse(test::read_file(packed / "meta.json"));
  meta.erase("tokenizer");
  dir.write("bytes/meta.json", meta.dump());
  const Dataset bytes = Dataset::open(packed);
  EXPECT_EQ(test::error_of(
                [&] { require_dataset_tokenizer(bytes, *make_byte_tokenizer(), "eval", "m"); }),
            "");
  const std::string e = test::error_of([&] {
    require_dataset_tokenizer(bytes, *load_tokenizer(kFixtures + "/hf_bpe_qwen2.json"), "eval",
                              "m");
  });
  EXPECT_NE(e.find("was packed with another tokenizer (259 ids)"), std::string::npos) << e;
}

}  // namespace
}  // namespace anchorctx::data
