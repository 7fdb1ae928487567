#include "anchorctx/data/doc_lengths.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/core/timing.h"
#include "support/error_of.h"

namespace anchorctx::data {
namespace {

std::int64_t sum(const std::vector<std::int32_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::int64_t{0});
}

// A folder of its own for this test process, removed when the process ends.
const std::filesystem::path& temp_dir() {
  struct Dir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("anchorctx_doc_lengths_test_" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

// Writes `text` to a fresh file in temp_dir(); returns its path.
std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = temp_dir() / name;
  std::ofstream(path) << text;
  return path.string();
}

using test::error_of;

TEST(DocLengthSpec, ParsesFixedAndLognormal) {
  const DocLengthSpec fixed = parse_doc_length_spec("fixed:128");
  EXPECT_EQ(fixed.kind, DocLengthSpec::Kind::fixed);
  EXPECT_EQ(fixed.fixed_length, 128);
  EXPECT_EQ(fixed.to_string(), "fixed:128");

  const DocLengthSpec ln = parse_doc_length_spec("lognormal:1024:1.0");
  EXPECT_EQ(ln.kind, DocLengthSpec::Kind::lognormal);
  EXPECT_DOUBLE_EQ(ln.median, 1024.0);
  EXPECT_DOUBLE_EQ(ln.sigma, 1.0);
  EXPECT_EQ(parse_doc_length_spec(ln.to_string()).median, 1024.0);
}

TEST(DocLengthSpec, RejectsBadSpecsWithTheSpecInTheMessage) {
  for (const char* bad : {"", "fixed", "fixed:", "fixed:0", "fixed:-3", "fixed:12x", "fixed:1.5",
                          "lognormal:1024", "lognormal:0:1", "lognormal:1024:-1", "lognormal:abc:1",
                          "lognormal:1024:1:2", "uniform:3", "file:"}) {
    const std::string message = error_of([&] { parse_doc_length_spec(bad); });
    EXPECT_NE(message, "") << "spec '" << bad << "' was accepted";
    EXPECT_NE(message.find(std::string("'") + bad + "'"), std::string::npos) << message;
  }
}

TEST(DocLengthSpec, ReadsFilesAndNamesTheBadLine) {
  const std::string good = write_temp("good.txt", "# lengths\n5\n\n 7 \n3\r\n");
  const DocLengthSpec spec = parse_doc_length_spec("file:" + good);
  EXPECT_EQ(spec.kind, DocLengthSpec::Kind::file);
  EXPECT_EQ(spec.lengths, (std::vector<std::int32_t>{5, 7, 3}));

  const std::string bad = write_temp("bad.txt", "5\n7\nseven\n");
  const std::string message = error_of([&] { parse_doc_length_spec("file:" + bad); });
  EXPECT_NE(message.find(bad), std::string::npos) << message;
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_NE(message.find("seven"), std::string::npos) << message;

  const std::string zero = write_temp("zero.txt", "4\n0\n");
  EXPECT_NE(error_of([&] { read_doc_lengths_file(zero); }).find("line 2"), std::string::npos);
  const std::string empty = write_temp("empty.txt", "\n# nothing\n");
  EXPECT_NE(error_of([&] { read_doc_lengths_file(empty); }), "");
  const std::string missing = write_temp("x", "") + ".does-not-exist";
  EXPECT_NE(error_of([&] { read_doc_lengths_file(missing); }).find(missing), std::string::npos);
}

TEST(GenerateDocLengths, FillsEverySequenceExactly) {
  for (const char* text :
       {"fixed:100", "fixed:1", "fixed:5000", "lognormal:64:1.5", "lognormal:1:0"}) {
    const DocLengthSpec spec = parse_doc_length_spec(text);
    for (const std::int32_t seq_len : {1, 7, 64, 1000, 4099}) {
      const auto docs = generate_doc_lengths(spec, 3, seq_len, 42);
      ASSERT_EQ(docs.size(), 3u);
      for (const auto& seq : docs) {
        EXPECT_EQ(sum(seq), seq_len) << text;
        EXPECT_TRUE(std::all_of(seq.begin(), seq.end(), [](std::int32_t n) { return n >= 1; }));
      }
    }
  }
}

TEST(GenerateDocLengths, FixedTruncatesTheLastDocument) {
  const auto docs = generate_doc_lengths(parse_doc_length_spec("fixed:100"), 1, 250, 0);
  EXPECT_EQ(docs[0], (std::vector<std::int32_t>{100, 100, 50}));
}

TEST(GenerateDocLengths, PrefixIsItsOwnFirstDocument) {
  const auto docs = generate_doc_lengths(parse_doc_length_spec("fixed:100"), 2, 201, 0, 1);
  for (const auto& seq : docs)
    EXPECT_EQ(seq, (std::vector<std::int32_t>{1, 100, 100}));
  const auto only = generate_doc_lengths(parse_doc_length_spec("fixed:10"), 1, 3, 0, 3);
  EXPECT_EQ(only[0], (std::vector<std::int32_t>{3}));
}

TEST(GenerateDocLengths, FileLengthsRunOnCyclicallyAcrossSequences) {
  const std::string path = write_temp("cycle.txt", "3\n5\n");
  const auto docs = generate_doc_lengths(parse_doc_length_spec("file:" + path), 2, 10, 0);
  EXPECT_EQ(docs[0], (std::vector<std::int32_t>{3, 5, 2}));  // 3 was cut to 2
  EXPECT_EQ(docs[1], (std::vector<std::int32_t>{5, 3, 2}));
}

TEST(GenerateDocLengths, SameSeedSameLengthsOtherSeedOthers) {
  const DocLengthSpec spec = parse_doc_length_spec("lognormal:256:1.0");
  const auto a = generate_doc_lengths(spec, 2, 8192, 7);
  EXPECT_EQ(a, generate_doc_lengths(spec, 2, 8192, 7));
  EXPECT_NE(a, generate_doc_lengths(spec, 2, 8192, 8));
  EXPECT_NE(a[0], a[1]);  // sequences draw on, they do not repeat
}

TEST(GenerateDocLengths, LognormalHasTheRequestedMedian) {
  // Long sequences so that truncation touches few documents; median within 10%.
  const auto docs =
      generate_doc_lengths(parse_doc_length_spec("lognormal:200:0.8"), 1, 4'000'000, 3);
  std::vector<double> lengths(docs[0].begin(), docs[0].end() - 1);  // last one truncated
  ASSERT_GT(lengths.size(), 5000u);
  EXPECT_NEAR(core::median(lengths), 200.0, 20.0);
}

TEST(GenerateDocLengths, RejectsBadArguments) {
  const DocLengthSpec spec = parse_doc_length_spec("fixed:4");
  EXPECT_THROW(generate_doc_lengths(spec, 1, 0, 0), Error);
  EXPECT_THROW(generate_doc_lengths(spec, -1, 8, 0), Error);
  EXPECT_THROW(generate_doc_lengths(spec, 1, 8, 0, 9), Error);
  EXPECT_THROW(generate_doc_lengths(spec, 1, 8, 0, -1), Error);
  EXPECT_TRUE(generate_doc_lengths(spec, 0, 8, 0).empty());
}

}  // namespace
}  // namespace anchorctx::data
