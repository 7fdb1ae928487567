// The dataset's tokenizer travels into every checkpoint (train/run_tokenizer.h): the byte
// tokenizer as HuggingFace files that encode as it does, a tokenizer file as a copy, and
// nothing (with a warning) when the file named at packing time changed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/data/tokenizer_files.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/config.h"
#include "anchorctx/train/checkpoint.h"
#include "anchorctx/train/run_tokenizer.h"
#include "anchorctx/train/trainer.h"
#include "support/small_dataset.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;
using anchorctx::test::read_file;
using anchorctx::test::TempDir;

// A few built-in documents packed into windows of 64 tokens with `tokenizer`.
fs::path pack_small(const fs::path& dir, const std::string& tokenizer) {
  return test::pack_small_corpus(dir, tokenizer);
}

train::TrainOptions small_run(const fs::path& data, const fs::path& out, const fs::path& dir) {
  model::LlamaConfig c = model::preset("tiny");
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  model::save_config(c, dir / "config.json");
  train::TrainOptions o;
  o.data = data;
  o.out = out;
  o.config_json = dir / "config.json";
  o.steps = 2;
  o.quiet = true;
  o.tensorboard = false;
  return o;
}

fs::path train_run(const train::TrainOptions& o) {
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(o, *comm);
  return trainer.run().last_checkpoint;
}

TEST(RunTokenizer, ByteTokenizerCheckpointCarriesHuggingFaceFiles) {
  const TempDir dir;
  const fs::path data = pack_small(dir.path(), "byte");
  const fs::path checkpoint = train_run(small_run(data, dir.path() / "run", dir.path()));
  for (const data::TokenizerFile& f : data::byte_tokenizer_hf_files())
    EXPECT_EQ(read_file((checkpoint / f.name).string()), f.content) << f.name;
  // The checkpoint folder is a tokenizer folder for our loader too, with the byte ids.
  const auto loaded = data::load_tokenizer(checkpoint.string());
  const std::string text = "The little \xff\xc3 <bos> fox";
  EXPECT_EQ(loaded->encode(text), data::make_byte_tokenizer()->encode(text));
  EXPECT_EQ(loaded->bos_id(), 256);
}

TEST(RunTokenizer, NoCopyLeavesTheCheckpointWithoutTokenizer) {
  const TempDir dir;
  const fs::path data = pack_small(dir.path(), "byte");
  train::TrainOptions o = small_run(data, dir.path() / "run", dir.path());
  o.copy_tokenizer = false;
  const fs::path checkpoint = train_run(o);
  EXPECT_FALSE(fs::exists(checkpoint / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "tokenizer"));
}

TEST(RunTokenizer, TokenizerFileIsCopiedAndAnExtraFileOfTheSameNameWins) {
  const TempDir dir;
  const fs::path tok = dir.path() / "tok";
  fs::create_directories(tok);
  for (const data::TokenizerFile& f : data::byte_tokenizer_hf_files())
    std::ofstream(tok / f.name, std::ios::binary) << f.content;
  const fs::path data = pack_small(dir.path(), tok.string());  // a folder spec: hf_bpe kind
  const fs::path own_config = dir.path() / "own" / "tokenizer_config.json";
  fs::create_directories(own_config.parent_path());
  std::ofstream(own_config) << "{\"mine\": true}\n";
  train::TrainOptions o = small_run(data, dir.path() / "run", dir.path());
  o.extra_files = {own_config};
  const fs::path checkpoint = train_run(o);
  EXPECT_EQ(read_file((checkpoint / "tokenizer.json").string()),
            read_file((tok / "tokenizer.json").string()));
  EXPECT_EQ(read_file((checkpoint / "special_tokens_map.json").string()),
            read_file((tok / "special_tokens_map.json").string()));
  EXPECT_EQ(read_file((checkpoint / "tokenizer_config.json").string()), "{\"mine\": true}\n");
}

TEST(RunTokenizer, ChangedOrMissingTokenizerIsNotCopied) {
  const TempDir dir;
  nlohmann::json meta = {
      {"tokenizer", {{"spec", (dir.path() / "gone.json").string()}, {"content_hash", "0123"}}}};
  EXPECT_TRUE(train::prepare_run_tokenizer(meta, dir.path() / "run").empty());
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "tokenizer"));
  // The file is there but is no longer the one the dataset was packed with.
  const std::string path = dir.write("tokenizer.json", data::byte_tokenizer_hf_files()[0].content);
  meta["tokenizer"]["spec"] = path;
  EXPECT_TRUE(train::prepare_run_tokenizer(meta, dir.path() / "run").empty());
  meta["tokenizer"]["content_hash"] = data::load_tokenizer(path)->content_hash();
  const std::vector<fs::path> files = train::prepare_run_tokenizer(meta, dir.path() / "run");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], dir.path() / "run" / "tokenizer" / "tokenizer.json");
  EXPECT_EQ(read_file(files[0].string()), read_file(path));
}

// A tokenizer file of another name goes into the folder under the name a model folder's reader
// looks for: as tok512.bin, generate found no tokenizer and eval read the ids as bytes.
TEST(RunTokenizer, CopiedUnderTheNameAModelFolderIsReadBy) {
  const TempDir dir;
  const std::string path =
      dir.write("my_tokenizer.json", data::byte_tokenizer_hf_files()[0].content);
  const nlohmann::json meta = {
      {"tokenizer",
       {{"spec", path}, {"content_hash", data::load_tokenizer(path)->content_hash()}}}};
  const std::vector<fs::path> files = train::prepare_run_tokenizer(meta, dir.path() / "run");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], dir.path() / "run" / "tokenizer" / "tokenizer.json");
  EXPECT_EQ(data::load_tokenizer((dir.path() / "run" / "tokenizer").string())->content_hash(),
            data::load_tokenizer(path)->content_hash());
  EXPECT_EQ(data::tokenizer_file_name("llama2c"), "tokenizer.bin");
  EXPECT_EQ(data::tokenizer_file_name("sentencepiece"), "tokenizer.model");
}

}  // namespace
