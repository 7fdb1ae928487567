// DocumentReader: every format, compressed inputs, and every bad input named by file and line.
#include "anchorctx/data/document_reader.h"

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "data/readers/readers.h"
#include "support/temp_dir.h"

namespace anchorctx::data {
namespace {

using anchorctx::test::TempDir;

std::string gzip(const std::string& data) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string zstd(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::vector<Document> read_all_docs(const std::vector<std::string>& inputs, ReaderOptions o = {}) {
  DocumentReader reader(inputs, o);
  std::vector<Document> docs;
  Document d;
  while (reader.next(d))
    docs.push_back(d);
  return docs;
}

// Runs the reader to the end and returns the error message (empty when none).
std::string error_of(const std::vector<std::string>& inputs, ReaderOptions o = {}) {
  try {
    read_all_docs(inputs, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kJsonl =
    "{\"text\": \"first document\", \"src\": \"wiki\"}\n"
    "\n"
    "{\"id\": 2, \"text\": \"second \\u00e9 document\\n\"}\r\n"
    "{\"text\": \"third\", \"src\": \"web\"}";  // no final newline

TEST(Readers, JsonlWithTextAndSourceFields) {
  TempDir dir;
  ReaderOptions o;
  o.source_field = "src";
  const auto docs = read_all_docs({dir.write("a.jsonl", kJsonl)}, o);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "first document");
  EXPECT_EQ(docs[0].source, "wiki");
  EXPECT_EQ(docs[0].line, 1);
  EXPECT_EQ(docs[1].text, "second \xc3\xa9 document\n");
  EXPECT_EQ(docs[1].source, "");
  EXPECT_EQ(docs[1].line, 3);
  EXPECT_EQ(docs[2].text, "third");
  EXPECT_EQ(docs[2].line, 4);
}

TEST(Readers, ConfigurableTextField) {
  TempDir dir;
  ReaderOptions o;
  o.text_field = "content";
  const auto docs = read_all_docs({dir.write("a.jsonl", "{\"content\": \"abc\"}\n")}, o);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].text, "abc");
}

TEST(Readers, GzipAndZstdAreDetectedByMagicBytes) {
  TempDir dir;
  // Misleading names on purpose: the content decides.
  const auto g = dir.write("a.data", gzip(kJsonl));
  const auto z = dir.write("b.jsonl", zstd(kJsonl));
  const auto gg =
      dir.write("c.jsonl.gz", gzip("{\"text\": \"one\"}\n") + gzip("{\"text\": \"two\"}\n"));
  DocumentReader reader({g, z, gg}, {});
  std::vector<Document> docs;
  Document d;
  while (reader.next(d))
    docs.push_back(d);
  ASSERT_EQ(docs.size(), 8u);  // 3 + 3 + 2 (concatenated gzip members)
  EXPECT_EQ(docs[3].text, "first document");
  EXPECT_EQ(docs[7].text, "two");
  EXPECT_EQ(reader.sources()[0].compression, "gzip");
  EXPECT_EQ(reader.sources()[1].compression, "zstd");
  // Source hashes are of the bytes on disk, as core::hash_file_hex gives them.
  EXPECT_EQ(reader.sources()[1].xxh3_128, core::hash_file_hex(z));
  EXPECT_EQ(reader.bytes_read(), reader.total_bytes());
}

TEST(Readers, LongLinesGrowTheBuffer) {
  TempDir dir;
  const std::string big(3 << 20, 'x');
  const auto docs = read_all_docs(
      {dir.write("big.jsonl.zst", zstd("{\"text\": \"" + big + "\"}\n{\"text\": \"after\"}\n"))});
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, big);
  EXPECT_EQ(docs[1].text, "after");
}

TEST(Readers, PretokenizedRowsSplitAtSourceEnds) {
  TempDir dir;
  const auto path =
      dir.write("p.jsonl",
                "{\"input_ids\": [1, 2, 3, 4, 5, 6, 7], \"source\": [{\"end\": 3}, {\"end\": 5}]}\n"
                "{\"input_ids\": [9, 8]}\n");
  const auto docs = read_all_docs({path});
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_TRUE(docs[0].pretokenized);
  EXPECT_EQ(docs[0].ids, (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ(docs[1].ids, (std::vector<std::int32_t>{4, 5}));
  EXPECT_EQ(docs[2].ids, (std::vector<std::int32_t>{6, 7}));  // after the last end
  EXPECT_EQ(docs[3].ids, (std::vector<std::int32_t>{9, 8}));
  EXPECT_EQ(docs[3].line, 2);
}

TEST(Readers, TextFilesOnePerFileOrPerLine) {
  TempDir dir;
  dir.write("corpus/b.txt", "second file\nstill second\n");
  dir.write("corpus/a.txt", "first file");
  dir.write("corpus/sub/c.txt.gz", gzip("third\n\nfourth\n"));
  dir.write("corpus/.hidden.txt", "never read");
  const auto docs = read_all_docs({(dir.path() / "corpus").string()});
  ASSERT_EQ(docs.size(), 3u);  // sorted: a, b, sub/c
  EXPECT_EQ(docs[0].text, "first file");
  EXPECT_EQ(docs[1].text, "second file\nstill second\n");
  EXPECT_EQ(docs[2].text, "third\n\nfourth\n");
  ReaderOptions o;
  o.one_per_line = true;
  const auto lines = read_all_docs({(dir.path() / "corpus").string()}, o);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[3].text, "third");
  EXPECT_EQ(lines[4].text, "fourth");
  EXPECT_EQ(lines[4].line, 3);
}

TEST(Readers, BadJsonlNamesFileAndLine) {
  TempDir dir;
  const std::string ok = "{\"text\": \"fine\"}\n";
  struct Case {
    std::string line, expect;
  };
  const std::vector<Case> cases = {
      {"{\"text\": \"unterminated}", "malformed JSON"},
      {"{\"text\": \"a\"} trailing", "malformed JSON"},
      {"{\"text\": \"a\", \"x\": [1, 2}", "malformed JSON"},
      {"{\"body\": \"no text\"}", "missing text field 'text'"},
      {"{\"text\": 42}", "not a string"},
      {"[\"text\"]", "not a JSON object"},
      {"{\"text\": \"bad \xff\xfe utf8\"}", "invalid UTF-8"},
  };
  for (const auto& c : cases) {
    const auto path = dir.write("bad.jsonl", ok + ok + c.line + "\n" + ok);
    const std::string err = error_of({path});
    EXPECT_NE(err.find(path + ":3: "), std::string::npos) << c.line << " -> " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.line << " -> " << err;
  }
}

TEST(Readers, BadPretokenizedRows) {
  TempDir dir;
  const auto a = dir.write("a.jsonl", "{\"input_ids\": [1, -2]}\n");
  EXPECT_NE(error_of({a}).find(a + ":1: input_ids[1]"), std::string::npos) << error_of({a});
  const auto b = dir.write(
      "b.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1], \"source\": [{\"end\": 5}]}\n");
  EXPECT_NE(error_of({b}).find(b + ":2: source[0].end"), std::string::npos) << error_of({b});
}

TEST(Readers, InvalidUtf8InTextFilesNamesTheLine) {
  TempDir dir;
  const auto path = dir.write("t.txt", "good line\nsecond \xc3\x28 bad\n");
  const std::string err = error_of({path});
  EXPECT_NE(err.find(path + ":2: invalid UTF-8 at column 8"), std::string::npos) << err;
  ReaderOptions o;
  o.one_per_line = true;
  const std::string err2 = error_of({path}, o);
  EXPECT_NE(err2.find(path + ":2: invalid UTF-8"), std::string::npos) << err2;
}

// An input without documents is bad input: an error, or counted under skip_bad.
TEST(Readers, EmptyInputIsAnError) {
  TempDir dir;
  const auto empty = dir.write("empty.jsonl", "");
  EXPECT_NE(error_of({empty}).find(empty + ": empty input"), std::string::npos);
  const auto blank = dir.write("blank.jsonl", "\n  \n");
  EXPECT_NE(error_of({blank}).find("empty input"), std::string::npos);
  std::filesystem::create_directories(dir.path() / "nothing");
  EXPECT_NE(error_of({(dir.path() / "nothing").string()}).find("empty input"), std::string::npos);
  EXPECT_NE(error_of({dir.file("missing.jsonl")}).find("no such file"), std::string::npos);
  EXPECT_THROW(DocumentReader({}, {}), Error);

  // With skip_bad an empty input among others is counted, and the others are read.
  const auto full = dir.write("full.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
  ReaderOptions skip;
  skip.skip_bad = true;
  DocumentReader reader({empty, full, blank}, skip);
  Document doc;
  int documents = 0;
  while (reader.next(doc))
    ++documents;
  EXPECT_EQ(documents, 2);
  EXPECT_EQ(reader.skipped().at("empty_input"), 2u);
}

TEST(Readers, TruncatedCompressedStreamsAreErrors) {
  TempDir dir;
  std::string body;
  for (int i = 0; i < 2000; ++i)
    body += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  const std::string g = gzip(body), z = zstd(body);
  const auto gp = dir.write("t.jsonl.gz", g.substr(0, g.size() / 2));
  const auto zp = dir.write("t.jsonl.zst", z.substr(0, z.size() / 2));
  EXPECT_NE(error_of({gp}).find(gp + ": truncated gzip stream"), std::string::npos)
      << error_of({gp});
  EXPECT_NE(error_of({zp}).find(zp + ": truncated zstd stream"), std::string::npos)
      << error_of({zp});
  ReaderOptions skip;
  skip.skip_bad = true;  // a truncated stream is not a line to skip
  EXPECT_NE(error_of({gp}, skip).find("truncated"), std::string::npos);
}

// The error of a truncated stream names the last line read whole: every line before the damage
// is delivered first (issue 11: it said "after line 0" wherever the stream broke).
TEST(Readers, TruncatedCompressedStreamsNameTheLastGoodLine) {
  TempDir dir;
  std::string body;
  for (int i = 0; i < 20000; ++i)
    body += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  const std::string g = gzip(body), z = zstd(body);
  for (const auto& [name, bytes] :
       {std::pair{std::string("t.jsonl.gz"), g}, std::pair{std::string("t.jsonl.zst"), z}}) {
    const auto path = dir.write(name, bytes.substr(0, bytes.size() * 2 / 3));
    DocumentReader reader({path}, {});
    Document d;
    std::int64_t read = 0;
    std::string message;
    try {
      while (reader.next(d)) {
        ASSERT_EQ(d.text, "document number " + std::to_string(read)) << name;
        ++read;
      }
    } catch (const Error& e) {
      message = e.what();
    }
    EXPECT_GT(read, 5000) << name;  // most lines before the cut (the decoder's buffers hold some)
    EXPECT_LT(read, 20000) << name;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    EXPECT_NE(message.find("(after line " + std::to_string(read) + ")"), std::string::npos)
        << message;
  }
}

// A UTF-8 byte-order mark opening a file is no text: JSONL, pre-tokenized JSONL and text read
// as without it; one anywhere else is still what it is.
TEST(Readers, AByteOrderMarkOpeningAFileIsDropped) {
  TempDir dir;
  const std::string bom = "\xEF\xBB\xBF";
  const auto jsonl = dir.write("bom.jsonl", bom + "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
  const auto docs = read_all_docs({jsonl});
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "one");
  const auto gz = dir.write("bom.jsonl.gz", gzip(bom + "{\"text\": \"one\"}\n"));
  EXPECT_EQ(read_all_docs({gz}).at(0).text, "one");
  const auto pre =
      dir.write("bom_pre.jsonl", bom + "{\"input_ids\": [5, 6, 7], \"source\": [{\"end\": 3}]}\n");
  EXPECT_EQ(read_all_docs({pre}).at(0).ids, (std::vector<std::int32_t>{5, 6, 7}));
  const auto text = dir.write("bom.txt", bom + "whole file\n");
  EXPECT_EQ(read_all_docs({text}).at(0).text, "whole file\n");
  ReaderOptions per_line;
  per_line.one_per_line = true;
  EXPECT_EQ(read_all_docs({text}, per_line).at(0).text, "whole file");
  const auto second =
      dir.write("bom2.jsonl", "{\"text\": \"one\"}\n" + bom + "{\"text\": \"two\"}\n");
  EXPECT_NE(error_of({second}).find(":2:"), std::string::npos) << error_of({second});
}

TEST(Readers, SkipBadCountsLinesByReason) {
  TempDir dir;
  const auto path = dir.write("mixed.jsonl",
                              "{\"text\": \"one\"}\n"
                              "{broken\n"
                              "{\"other\": 1}\n"
                              "{\"text\": \"bad \xff\"}\n"
                              "{\"text\": \"two\"}\n"
                              "{\"text\": \"x\"} {\n");
  ReaderOptions o;
  o.skip_bad = true;
  DocumentReader reader({path}, o);
  std::vector<std::string> texts;
  Document d;
  while (reader.next(d))
    texts.push_back(d.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"one", "two"}));
  const auto& s = reader.skipped();
  EXPECT_EQ(s.at("malformed_json"), 2u);
  EXPECT_EQ(s.at("missing_field"), 1u);
  EXPECT_EQ(s.at("invalid_utf8"), 1u);
  // A file whose every line is bad yields nothing but is counted, not silent.
  const auto all_bad = dir.write("all_bad.jsonl", "nope\n");
  DocumentReader r2({all_bad}, o);
  EXPECT_FALSE(r2.next(d));
  EXPECT_EQ(r2.skipped().at("malformed_json"), 1u);
}

TEST(Readers, FirstInvalidUtf8Location) {
  EXPECT_EQ(readers::first_invalid_utf8("ab\ncd\xe2\x82"),
            (std::pair<std::int64_t, std::int64_t>{2, 3}));
  EXPECT_EQ(readers::first_invalid_utf8("\xed\xa0\x80"),
            (std::pair<std::int64_t, std::int64_t>{1, 1}));  // surrogate
  EXPECT_EQ(readers::first_invalid_utf8("\xc0\xaf"),
            (std::pair<std::int64_t, std::int64_t>{1, 1}));  // overlong
}

}  // namespace
}  // namespace anchorctx::data
