// SentencePiece .model files: the real LLaMA-2 model against expected ids (when
// ../shared/data is present), a tiny model trained here with the sentencepiece trainer (always),
// and bad files.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/data/tokenizer.h"
#include "data/tokenizers/loaders.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using Ids = std::vector<std::int32_t>;

// Trains a small BPE model with byte fallback (the LLaMA-2 recipe at toy scale) in `dir` and
// returns its path. `extra` adds trainer flags (e.g. reserved ids).
std::string train_tiny_model(const test::TempDir& dir, const std::string& extra) {
  std::string corpus;
  for (int i = 0; i < 20; ++i)
    corpus +=
        "the quick brown fox jumps over the lazy dog\n"
        "a long context needs an anchor token at the start of every window\n"
        "tokens are packed into windows of fixed length\n";
  const std::string input = dir.write("corpus.txt", corpus);
  const std::string prefix = (dir.path() / "tiny").string();
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + input + " --model_prefix=" + prefix +
      " --model_type=bpe --vocab_size=320 --hard_vocab_limit=false --byte_fallback=true"
      " --character_coverage=1.0 --num_threads=1 --minloglevel=2 " +
      extra);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return prefix + ".model";
}

TEST(SentencePieceTiny, IdsAreTheLibrarysWithoutBos) {
  test::TempDir dir;
  const std::string path = train_tiny_model(dir, "");
  const auto tok = load_tokenizer(path);
  sentencepiece::SentencePieceProcessor reference;
  ASSERT_TRUE(reference.Load(path).ok());
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), reference.GetPieceSize());
  for (const std::string text :
       {"the quick brown fox", "anchor tokens at the start", "", " leading and  double spaces",
        "unseen: \xc3\xa9\xf0\x9f\x98\x80 Z!", "tab\tand\nnewline"}) {
    const std::vector<int> want = reference.EncodeAsIds(text);
    const Ids ids = tok->encode(text);
    EXPECT_EQ(ids, Ids(want.begin(), want.end())) << text;
    if (!ids.empty()) {
      EXPECT_NE(ids.front(), *tok->bos_id()) << text;
    }
    // Byte fallback: every character is representable, so the text round-trips.
    EXPECT_EQ(tok->decode(ids), reference.DecodeIds(want)) << text;
  }
  EXPECT_EQ(tok->decode(tok->encode("unseen: \xc3\xa9\xf0\x9f\x98\x80 Z!")),
            "unseen: \xc3\xa9\xf0\x9f\x98\x80 Z!");
}

TEST(SentencePieceTiny, ReservedIdsComeFromTheModel) {
  test::TempDir dir;
  {
    const auto tok = load_sentencepiece_model(train_tiny_model(dir, ""));
    // The trainer's defaults: unk 0, bos 1, eos 2, no pad.
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->pad_id(), std::nullopt);
  }
  test::TempDir other;
  const auto tok = load_sentencepiece_model(
      train_tiny_model(other, "--unk_id=0 --pad_id=1 --eos_id=2 --bos_id=-1"));
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 1);
  // Control pieces decode to nothing.
  const Ids body = tok->encode("the fox");
  Ids ids{1};
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(2);
  EXPECT_EQ(tok->decode(ids), "the fox");
}

TEST(SentencePieceTiny, HashIsTheFilesAndOutOfRangeIdsThrow) {
  test::TempDir dir;
  const std::string path = train_tiny_model(dir, "");
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->content_hash(), core::hash_file_hex(path));
  EXPECT_THROW(tok->decode(Ids{tok->vocab_size()}), Error);
  EXPECT_THROW(tok->decode(Ids{-1}), Error);
}

// Loading `bytes` as a .model must throw anchorctx::Error naming the file.
void expect_load_error(const test::TempDir& dir, std::string_view bytes) {
  const std::string path = dir.write("bad.model", bytes);
  for (const bool through_dispatch : {false, true}) {
    try {
      if (through_dispatch) {
        load_tokenizer(path);
      } else {
        load_sentencepiece_model(path);
      }
      ADD_FAILURE() << "no error for " << bytes.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(SentencePieceTiny, BadFilesGiveErrorsNamingTheFile) {
  test::TempDir dir;
  const std::string good = test::read_file(train_tiny_model(dir, ""));
  ASSERT_GT(good.size(), 1000u);
  expect_load_error(dir, "");
  expect_load_error(dir, "this is not a protobuf at all");
  expect_load_error(dir, std::string("\x0a\xff\xff\xff\xff\x0f", 6));  // a length past the end
  expect_load_error(dir, good.substr(0, good.size() / 2));
  expect_load_error(dir, good.substr(0, 7));
  try {
    load_sentencepiece_model((dir.path() / "absent.model").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.model"), std::string::npos) << e.what();
  }
}

// ---- the real LLaMA-2 model ----

TEST(SentencePieceLlama2, KnownIds) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "tokenizers/llama2-spm/tokenizer.model");
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), std::nullopt);
  EXPECT_EQ(tok->content_hash(), core::hash_file_hex(path));
  EXPECT_EQ(tok->encode("I believe the meaning of life is"),
            (Ids{306, 4658, 278, 6593, 310, 2834, 338}));
  EXPECT_EQ(tok->encode("Hello world!"), (Ids{15043, 3186, 29991}));
  EXPECT_EQ(tok->decode(Ids{1, 15043, 3186, 29991, 2}), "Hello world!");
  // The folder form of the spec finds tokenizer.model.
  EXPECT_EQ(load_tokenizer(std::filesystem::path(path).parent_path().string())->content_hash(),
            tok->content_hash());
}

// llama.cpp's test strings: each followed by a line "__ggml_vocab_test__"; the .out file
// has the expected ids of string i (without bos) on line i.
TEST(SentencePieceLlama2, VocabTestStrings) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "tokenizers/llama2-spm/tokenizer.model");
  ANCHORCTX_SHARED_DATA_OR_SKIP(inp_path, "tokenizers/vocab-test-llama-spm.inp");
  ANCHORCTX_SHARED_DATA_OR_SKIP(out_path, "tokenizers/vocab-test-llama-spm.out");
  const auto tok = load_tokenizer(path);
  const std::string inp = test::read_file(inp_path);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (std::size_t pos = 0; pos < inp.size();) {
    const std::size_t end = inp.find(separator, pos);
    ASSERT_NE(end, std::string::npos) << "no separator after byte " << pos;
    texts.push_back(inp.substr(pos, end - pos));
    pos = end + separator.size();
  }
  std::ifstream out(out_path);
  std::vector<Ids> expected;
  for (std::string line; std::getline(out, line);) {
    std::istringstream words(line);
    Ids ids;
    for (std::int32_t id; words >> id;)
      ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(texts.size(), 46u);
  ASSERT_EQ(expected.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const Ids ids = tok->encode(texts[i]);
    EXPECT_EQ(ids, expected[i]) << "string " << i << ": " << testing::PrintToString(texts[i]);
  }
}

TEST(SentencePieceLlama2, TruncatedModelGivesAnError) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(path, "tokenizers/llama2-spm/tokenizer.model");
  test::TempDir dir;
  const std::string bytes = test::read_file(path);
  expect_load_error(dir, bytes.substr(0, bytes.size() - 100));
}

}  // namespace
}  // namespace anchorctx::data
