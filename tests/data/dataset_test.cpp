// Dataset folder: round trip, O(1) window access, damaged folders, interrupted writes.
#include "anchorctx/data/dataset.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using anchorctx::test::TempDir;
namespace fs = std::filesystem;

constexpr std::int32_t kSeqLen = 15;

// Writes `n` windows: window w holds tokens w*100 + k (mod vocab), documents at 0, 1 and w % 10
// + 2, a loss span on odd windows.
void write_dataset(const fs::path& out, std::uint64_t n, std::int32_t vocab, bool shuffle) {
  DatasetWriter writer(out, kSeqLen, vocab);
  for (std::uint64_t w = 0; w < n; ++w) {
    std::vector<std::int32_t> tokens(kSeqLen + 1);
    for (int k = 0; k <= kSeqLen; ++k)
      tokens[k] = static_cast<std::int32_t>((w * 100 + k) % vocab);
    const std::vector<std::int32_t> starts{0, 1, static_cast<std::int32_t>(w % 10 + 2)};
    std::vector<std::pair<std::int32_t, std::int32_t>> spans;
    if (w % 2 == 1) spans.emplace_back(2, 4);
    writer.add(Window{tokens, starts, spans});
  }
  nlohmann::json meta;
  meta["anchor_mode"] = "shared";
  meta["batch_size"] = 2;
  writer.commit(meta, window_order(n, shuffle, 3));
}

std::string open_error(const fs::path& dir, bool verify = false) {
  try {
    const Dataset ds = Dataset::open(dir);
    if (verify) ds.verify();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Dataset, RoundTripWithShuffledOrder) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 25, 300, true);
  const Dataset ds = Dataset::open(out);
  ds.verify();
  EXPECT_EQ(ds.num_windows(), 25u);
  EXPECT_EQ(ds.seq_len(), kSeqLen);
  EXPECT_EQ(ds.anchor_mode(), AnchorMode::shared);
  EXPECT_EQ(ds.batch_size(), 2u);
  EXPECT_EQ(ds.num_batches(), 12u);
  EXPECT_EQ(ds.meta()["token_dtype"], "uint16");
  bool moved = false;
  for (std::uint64_t i = 0; i < 25; ++i) {
    const std::uint64_t p = ds.physical(i);
    moved |= p != i;
    const auto tokens = ds.tokens(i);
    ASSERT_EQ(tokens.size(), static_cast<std::size_t>(kSeqLen + 1));
    EXPECT_EQ(tokens[3], static_cast<std::int32_t>((p * 100 + 3) % 300));
    const auto starts = ds.doc_starts(i);
    ASSERT_EQ(starts.size(), 3u);
    EXPECT_EQ(starts[2], p % 10 + 2);
    EXPECT_EQ(ds.loss_spans(i).size(), p % 2 == 1 ? 2u : 0u);
  }
  EXPECT_TRUE(moved);
  EXPECT_THROW(ds.tokens(25), Error);
}

TEST(Dataset, WideVocabularyUsesUint32) {
  TempDir tmp;
  write_dataset(tmp.path() / "ds", 4, 70000, false);
  const Dataset ds = Dataset::open(tmp.path() / "ds");
  ds.verify();
  EXPECT_EQ(ds.meta()["token_dtype"], "uint32");
  EXPECT_EQ(ds.tokens(3)[15], 315);
  EXPECT_EQ(fs::file_size(tmp.path() / "ds" / "tokens.bin"), 4u * 16 * 4);
}

TEST(Dataset, TruncatedTokensFileIsNamed) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  fs::resize_file(out / "tokens.bin", fs::file_size(out / "tokens.bin") - 7);
  const std::string err = open_error(out);
  EXPECT_NE(err.find("tokens.bin"), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST(Dataset, WrongMetaIsNamed) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  const std::string original = anchorctx::test::read_file((out / "meta.json").string());
  const auto rewrite = [&](auto edit) {
    nlohmann::json meta = nlohmann::json::parse(original);
    edit(meta);
    std::ofstream(out / "meta.json") << meta.dump();
  };
  rewrite([](nlohmann::json& m) { m["seq_len"] = 31; });
  EXPECT_NE(open_error(out).find("tokens.bin: 320 bytes, expected 640"), std::string::npos)
      << open_error(out);
  rewrite([](nlohmann::json& m) { m["counts"]["windows"] = 11; });
  EXPECT_NE(open_error(out).find("expected"), std::string::npos) << open_error(out);
  rewrite([](nlohmann::json& m) { m["format_version"] = 99; });
  EXPECT_NE(open_error(out).find("format_version 99"), std::string::npos) << open_error(out);
  rewrite([](nlohmann::json& m) { m["anchor_mode"] = "sometimes"; });
  EXPECT_NE(open_error(out).find("anchor_mode"), std::string::npos) << open_error(out);
  rewrite([](nlohmann::json& m) { m.erase("vocab_size"); });
  EXPECT_NE(open_error(out).find("no 'vocab_size'"), std::string::npos) << open_error(out);
  std::ofstream(out / "meta.json") << "{not json";
  EXPECT_NE(open_error(out).find("meta.json: not valid JSON"), std::string::npos);
  fs::remove(out / "meta.json");
  EXPECT_NE(open_error(out).find("no meta.json"), std::string::npos);
}

// meta.json read as a regular file: a FIFO blocked every reader, a folder gave libstdc++'s
// "basic_filebuf::underflow" naming nothing.
TEST(Dataset, MetaJsonThatIsNotAFileIsNamed) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  fs::remove(out / "meta.json");
  fs::create_directory(out / "meta.json");
  std::string err = open_error(out);
  EXPECT_NE(err.find((out / "meta.json").string() + ": not a regular file (a folder"),
            std::string::npos)
      << err;
  fs::remove(out / "meta.json");
  ASSERT_EQ(::mkfifo((out / "meta.json").c_str(), 0600), 0);
  err = open_error(out);
  EXPECT_NE(err.find((out / "meta.json").string() + ": not a regular file (a FIFO"),
            std::string::npos)
      << err;
}

// Wrong types, values beyond their field and counts the files contradict: each named by
// meta.json and its key (they used to give nlohmann's raw type_error, a wrapped batch_size, or
// pass as valid).
TEST(Dataset, MetaTypesRangesAndCountsAreNamed) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  const std::string original = anchorctx::test::read_file((out / "meta.json").string());
  const auto error_after = [&](auto edit) {
    nlohmann::json meta = nlohmann::json::parse(original);
    edit(meta);
    std::ofstream(out / "meta.json") << meta.dump();
    return open_error(out);
  };
  const auto expect = [](const std::string& error, const std::string& want) {
    EXPECT_NE(error.find(want), std::string::npos) << "want: " << want << "\ngot: " << error;
  };
  expect(error_after([](auto& m) { m["token_dtype"] = 7; }),
         "meta.json: 'token_dtype' is not a string");
  expect(error_after([](auto& m) { m["anchor_mode"] = 7; }),
         "meta.json: 'anchor_mode' is not a string");
  expect(error_after([](auto& m) { m["format"] = 7; }), "meta.json: 'format' is not");
  expect(error_after([](auto& m) { m["batch_size"] = std::uint64_t{1} << 62; }),
         "meta.json: batch_size 4611686018427387904 out of range");
  expect(error_after([](auto& m) { m["batch_size"] = (std::uint64_t{1} << 32) + 3; }),
         "meta.json: batch_size 4294967299 out of range");
  expect(error_after([](auto& m) { m["anchor_id"] = 99999; }),
         "meta.json: 'anchor_id' is 99999, not an id of the vocabulary [0, 300)");
  expect(error_after([](auto& m) { m["anchor_id"] = -1; }), "'anchor_id' is -1");
  expect(error_after([](auto& m) { m["anchor_id"] = nullptr; }),
         "anchor_id is null but anchor_mode is shared");
  expect(error_after([](auto& m) {
           m["tokenizer"] = {{"vocab_size", 301}, {"bos_id", 1}};
         }),
         "tokenizer.vocab_size 301 differs from vocab_size 300");
  expect(error_after([](auto& m) {
           m["tokenizer"] = {{"vocab_size", 300}, {"bos_id", 100000}};
         }),
         "'tokenizer.bos_id' is 100000");
  expect(error_after([](auto& m) { m["window_len"] = 99; }),
         "meta.json: window_len 99 is not seq_len + 1 = 16");
  expect(error_after([](auto& m) { m["counts"]["loss_spans"] = 50; }),
         "counts.loss_spans is 50, but mask_index.bin gives 5");
  expect(error_after([](auto& m) { m["counts"]["doc_starts"] = std::uint64_t{1} << 62; }),
         "counts.doc_starts is 4611686018427387904, but doc_index.bin gives 30");
  expect(error_after([](auto& m) { m["counts"]["tokens"] = 1; }), "counts.tokens is 1");
  // What verify(), train's tokenizer copy and inspect --decode read: nlohmann's type_error
  // there named neither meta.json nor the key.
  expect(error_after([](auto& m) { m["files"]["tokens.bin"]["xxh3_128"] = 7; }),
         "meta.json: 'files.tokens.bin.xxh3_128' is 7, not a string");
  expect(error_after([](auto& m) { m["files"]["order.bin"].erase("xxh3_128"); }),
         "meta.json: 'files.order.bin.xxh3_128' is missing, not a string");
  for (const char* key : {"spec", "kind", "content_hash"})
    expect(error_after([=](auto& m) {
             m["tokenizer"] = {{key, 7}};
           }),
           fmt::format("meta.json: 'tokenizer.{}' is not a string", key));
  // The folder as written still opens.
  EXPECT_EQ(error_after([](auto&) {}), "");
}

// Overwrites `bytes` at `offset` of `file`, keeping its size (as a flipped disk block would).
void overwrite(const fs::path& file, std::streamoff offset, std::string_view bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << file;
}

TEST(Dataset, AlteredContentFailsVerification) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  // Window 2's last document start 4 -> 5: still sorted inside the window, so only the hash
  // sees it.
  overwrite(out / "doc_starts.bin", 4 * 8, "\x05");
  EXPECT_EQ(open_error(out), "");
  const std::string err = open_error(out, true);
  EXPECT_NE(err.find("doc_starts.bin: content hash"), std::string::npos) << err;
}

TEST(Dataset, DocumentStartOutsideTheWindowIsNamedAtOpen) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  overwrite(out / "doc_starts.bin", 4 * 3 + 2, "\x7f");  // window 1's first start: 0 -> 0x7f0000
  std::string err = open_error(out);
  EXPECT_NE(err.find("doc_starts.bin: window 1 starts at 8323072, not 0"), std::string::npos)
      << err;
  write_dataset(tmp.path() / "ds2", 10, 300, false);
  overwrite(tmp.path() / "ds2" / "doc_starts.bin", 4 * 5 + 1, "\x01");  // 3 -> 259, W is 16
  err = open_error(tmp.path() / "ds2");
  EXPECT_NE(err.find("doc_starts.bin: window 1 document 2 starts at 259"), std::string::npos)
      << err;
}

TEST(Dataset, OrderOutOfRangeIsNamedAtOpen) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, true);
  overwrite(out / "order.bin", 8 * 4, std::string(8, '\xff'));
  std::string err = open_error(out);
  EXPECT_NE(err.find("order.bin: entry 4 (18446744073709551615) is out of range"),
            std::string::npos)
      << err;
  write_dataset(tmp.path() / "ds2", 10, 300, false);
  overwrite(tmp.path() / "ds2" / "order.bin", 8 * 4, std::string("\x03\0\0\0\0\0\0\0", 8));
  err = open_error(tmp.path() / "ds2");
  EXPECT_NE(err.find("order.bin: entry 4 (3) is repeated"), std::string::npos) << err;
}

TEST(Dataset, OffsetsOutOfOrderAreNamedAtOpen) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  overwrite(out / "mask_index.bin", 8 * 3 + 7, "\x10");  // entry 3 huge, entry 4 below it
  const std::string err = open_error(out);
  EXPECT_NE(err.find("mask_index.bin: window 2"), std::string::npos) << err;
}

TEST(Dataset, TokenOutsideTheVocabularyIsNamedWhereItIsRead) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  overwrite(out / "tokens.bin", 2 * (16 * 3 + 5) + 1, "\x7f");  // window 3 token 5 >= 300
  const Dataset ds = Dataset::open(out);                        // O(windows): not seen here
  EXPECT_NO_THROW(ds.tokens(2));
  try {
    ds.tokens(3);
    ADD_FAILURE() << "an id outside the vocabulary was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokens.bin: window 3 token 5: id 32517 outside"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NE(open_error(out, true).find("tokens.bin: content hash"), std::string::npos);
}

TEST(Dataset, ImpossibleWindowCountIsRefused) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  write_dataset(out, 10, 300, false);
  nlohmann::json meta =
      nlohmann::json::parse(anchorctx::test::read_file((out / "meta.json").string()));
  meta["counts"]["windows"] = std::uint64_t{1} << 62;
  std::ofstream(out / "meta.json") << meta.dump();
  EXPECT_NE(open_error(out).find("impossibly large"), std::string::npos) << open_error(out);
}

TEST(Dataset, MissingFileIsNamed) {
  TempDir tmp;
  write_dataset(tmp.path() / "ds", 3, 300, false);
  fs::remove(tmp.path() / "ds" / "order.bin");
  EXPECT_NE(open_error(tmp.path() / "ds").find("order.bin is missing"), std::string::npos);
}

TEST(Dataset, InterruptedWriteLeavesNothingThatLooksComplete) {
  TempDir tmp;
  const fs::path out = tmp.path() / "ds";
  {
    DatasetWriter writer(out, kSeqLen, 300);
    std::vector<std::int32_t> tokens(kSeqLen + 1, 5);
    const std::vector<std::int32_t> starts{0};
    writer.add(Window{tokens, starts, {}});
    EXPECT_FALSE(fs::exists(out));  // only a hidden temporary folder so far
    // Destroyed without commit: as if the run failed.
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  EXPECT_NE(open_error(out).find("no such folder"), std::string::npos);
}

TEST(Dataset, WriterRejectsBadWindows) {
  TempDir tmp;
  DatasetWriter writer(tmp.path() / "ds", kSeqLen, 300);
  std::vector<std::int32_t> tokens(kSeqLen + 1, 5);
  const std::vector<std::int32_t> starts{0};
  tokens[4] = 300;
  EXPECT_THROW(writer.add(Window{tokens, starts, {}}), Error);
  tokens.pop_back();
  EXPECT_THROW(writer.add(Window{tokens, starts, {}}), Error);
  EXPECT_THROW(DatasetWriter(tmp.path(), kSeqLen, 300), Error);  // exists already
}

}  // namespace
}  // namespace anchorctx::data
