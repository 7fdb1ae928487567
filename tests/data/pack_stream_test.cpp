// One document per text file read in parts (ReaderOptions::text_part_bytes) and packed as it
// streams: the parts are the file; bad UTF-8 is named where the whole file would name it; and
// `pack_dataset` of text files in parts writes the very windows the same documents give whole.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/random.h"
#include "anchorctx/data/document_reader.h"
#include "anchorctx/data/pack.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using anchorctx::test::read_file;
using anchorctx::test::TempDir;

struct Read {
  std::vector<std::string> docs;  // the parts put back together
  std::uint64_t parts = 0;
  std::size_t largest_part = 0;
};

Read read_in_parts(const std::vector<std::string>& inputs, std::size_t part_bytes,
                   bool skip_bad = false, std::map<std::string, std::uint64_t>* skipped = nullptr) {
  ReaderOptions o;
  o.text_part_bytes = part_bytes;
  o.skip_bad = skip_bad;
  DocumentReader reader(inputs, o);
  Read r;
  Document d;
  bool open = false;
  while (reader.next(d)) {
    ++r.parts;
    r.largest_part = std::max(r.largest_part, d.text.size());
    EXPECT_EQ(d.continues_previous, open) << "part " << r.parts;
    if (!d.continues_previous) r.docs.emplace_back();
    r.docs.back() += d.text;
    open = d.more_parts;
  }
  EXPECT_FALSE(open) << "the last part says more follow";
  if (skipped != nullptr) *skipped = reader.skipped();
  return r;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Words, newlines, runs of spaces and 2-, 3- and 4-byte characters.
std::string text_of(std::uint64_t seed, std::size_t bytes) {
  static const char* const kWords[] = {
      "the",           "anchor",           " ",    "  ",  "\n", "\n\n", "\xc3\xa9t\xc3\xa9",
      "\xe2\x96\x81x", "\xf0\x9f\x98\x80", "0123", "a.b", "\t"};
  std::uint64_t state = seed;
  std::string s;
  while (s.size() < bytes) {
    s += kWords[core::bits_below(core::splitmix64(state), std::size(kWords))];
    if (core::bits_below(core::splitmix64(state), 2) == 0) s += ' ';
  }
  return s;
}

TEST(TextInParts, PartsPutBackTogetherAreTheFile) {
  TempDir dir;
  const std::string a = text_of(1, 10'000), b = "x", c = "\xef\xbb\xbf" + text_of(2, 333);
  const std::string pa = dir.write("a.txt", a), pb = dir.write("b.txt", b),
                    pc = dir.write("c.txt", c);
  dir.write("empty.txt", "");
  for (const std::size_t part : {1, 2, 3, 5, 64, 4096, 1 << 20}) {
    SCOPED_TRACE(part);
    const Read r = read_in_parts({pa, pb, pc}, part);
    ASSERT_EQ(r.docs.size(), 3u);
    EXPECT_EQ(r.docs[0], a);
    EXPECT_EQ(r.docs[1], b);
    EXPECT_EQ(r.docs[2], c.substr(3));  // the byte-order mark is dropped, as for a whole file
    EXPECT_LE(r.largest_part, std::max<std::size_t>(part, 4));
    if (part <= 64) {
      EXPECT_GE(r.parts, a.size() / part);
    }
  }
  EXPECT_NE(error_of([&] { read_in_parts({dir.file("empty.txt")}, 7); }).find("empty input"),
            std::string::npos);
}

TEST(TextInParts, BadUtf8IsNamedAsForTheWholeFile) {
  TempDir dir;
  // A bad byte on line 3 at column 5 (characters), after multi-byte characters on that line,
  // and a file ending inside a character.
  const std::string bad = "ab\n\xc3\xa9\xc3\xa9\nxy\xe2\x82\xacz\xff rest\n" + text_of(3, 3000);
  const std::string truncated = "abc\ndef \xe2\x82";
  const std::string pbad = dir.write("bad.txt", bad), ptrunc = dir.write("trunc.txt", truncated);
  const std::string whole_bad = error_of([&] { read_in_parts({pbad}, 0); });
  const std::string whole_trunc = error_of([&] { read_in_parts({ptrunc}, 0); });
  EXPECT_NE(whole_bad.find("bad.txt:3: invalid UTF-8 at column 5"), std::string::npos) << whole_bad;
  for (const std::size_t part : {1, 2, 3, 4, 7, 100, 1 << 20}) {
    SCOPED_TRACE(part);
    EXPECT_EQ(error_of([&] { read_in_parts({pbad}, part); }), whole_bad);
    EXPECT_EQ(error_of([&] { read_in_parts({ptrunc}, part); }), whole_trunc);
    // Skipping: the file is skipped whole, nothing of it given, even when the bad byte comes
    // after the first part (the file is checked before its first part is given).
    std::map<std::string, std::uint64_t> skipped;
    const std::string good = dir.write("good.txt", "fine text");
    const Read r = read_in_parts({pbad, good}, part, true, &skipped);
    ASSERT_EQ(r.docs.size(), 1u);
    EXPECT_EQ(r.docs[0], "fine text");
    EXPECT_EQ(skipped["invalid_utf8"], 1u);
  }
}

// The dataset files pack writes, but meta.json (which names the inputs).
std::map<std::string, std::string> dataset_files(const std::string& folder) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(folder))
    if (e.path().filename() != "meta.json")
      files[e.path().filename().string()] = read_file(e.path());
  return files;
}

nlohmann::json pack_stats(const std::string& folder) {
  return nlohmann::json::parse(
      read_file(std::filesystem::path(folder) / "meta.json"))["pack_stats"];
}

// Documents whose byte-tokenizer lengths sit on every window edge for seq_len 63 (a window
// of 64 tokens, 63 of them document tokens beside the shared anchor), and long ones.
std::vector<std::string> edge_documents() {
  std::vector<std::string> docs;
  for (const std::size_t len : {63, 64, 1, 2, 3, 62, 126, 127, 129, 5000, 63, 40'000, 17, 300'001})
    docs.push_back(text_of(len, len).substr(0, len));
  // substr may cut a character: its bytes are replaced by ASCII, keeping the length.
  for (std::string& d : docs) {
    const std::size_t len = d.size();
    while (!d.empty() && (static_cast<unsigned char>(d.back()) & 0x80) != 0)
      d.pop_back();
    d.resize(len, 'z');
  }
  return docs;
}

void expect_parts_pack_like_whole(const std::string& tokenizer, std::size_t piece_bytes) {
  TempDir dir;
  const std::vector<std::string> docs = edge_documents();
  nlohmann::json lines;
  std::string jsonl;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    dir.write(fmt::format("texts/doc{:02}.txt", i), docs[i]);
    jsonl += nlohmann::json{{"text", docs[i]}}.dump() + "\n";
  }
  const std::string jsonl_path = dir.write("whole.jsonl", jsonl);
  for (const AnchorMode mode : {AnchorMode::shared, AnchorMode::per_doc}) {
    for (const bool interleave : {false, true}) {
      SCOPED_TRACE(fmt::format("{} {} interleave {}", tokenizer, to_string(mode), interleave));
      PackConfig c;
      c.tokenizer = tokenizer;
      c.seq_len = 63;
      c.anchor_mode = mode;
      c.interleave_chunks = interleave;
      c.quiet = true;
      c.threads = 2;
      c.inputs = {jsonl_path};
      c.out = dir.file("whole");
      c.replace = true;
      pack_dataset(c);
      c.inputs = {dir.file("texts")};
      c.out = dir.file("parts");
      c.reader.text_part_bytes = 777;  // parts that split characters
      c.piece_bytes = piece_bytes;
      const nlohmann::json summary = pack_dataset(c);
      EXPECT_EQ(summary["documents_read"], docs.size());
      EXPECT_EQ(pack_stats(dir.file("parts")), pack_stats(dir.file("whole")));
      EXPECT_TRUE(dataset_files(dir.file("parts")) == dataset_files(dir.file("whole")));
      // JSONL lines longer than a part are cut into pieces in the reading thread too.
      c.inputs = {jsonl_path};
      c.out = dir.file("lines");
      pack_dataset(c);
      EXPECT_TRUE(dataset_files(dir.file("lines")) == dataset_files(dir.file("whole")));
    }
  }
}

TEST(PackStream, TextFilesInPartsPackLikeTheWholeDocumentsByte) {
  expect_parts_pack_like_whole("byte", 1000);
}

TEST(PackStream, TextFilesInPartsPackLikeTheWholeDocumentsSentencePiece) {
  expect_parts_pack_like_whole(std::string(ANCHORCTX_TESTS_DIR) + "/data/fixtures/spm_bpe.model",
                               1000);
}

TEST(PackStream, TextFilesInPartsPackLikeTheWholeDocumentsHfBpe) {
  expect_parts_pack_like_whole(
      std::string(ANCHORCTX_TESTS_DIR) + "/data/fixtures/hf_bpe_qwen2.json", 1000);
}

}  // namespace
}  // namespace anchorctx::data
