// Metric sinks: metrics.jsonl lines parse, hold the exact doubles and null for non-finite values,
// and a resumed run's truncation keeps each step once; TensorBoard event files parse back here
// record by record (framing, both CRCs, the Event fields) and, when the Python tensorboard package
// is importable, through tensorboard's EventAccumulator. CRC-32C against its check value.
#include "anchorctx/train/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::read_file;
using test::TempDir;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

std::vector<std::int64_t> steps_in(const fs::path& path) {
  std::vector<std::int64_t> steps;
  for (const std::string& line : lines_of(read_file(path.string())))
    steps.push_back(json::parse(line).at("step").get<std::int64_t>());
  return steps;
}

// ---- JSONL ----

TEST(JsonlMetrics, LinesParseWithExactValuesAndNullsForNonFinite) {
  const TempDir dir;
  const fs::path path = dir.path() / "run" / "metrics.jsonl";  // the folder is created
  {
    JsonlMetricsSink sink(path);
    sink.write({0, {{"loss", 10.25}, {"lr", 3e-4}, {"grad_norm", kNan}}});
    sink.write({1, {{"loss", 0.1 + 0.2}, {"lr", 1.0 / 3.0}, {"grad_norm", kInf}}});
    sink.write({2, {{"loss", -kInf}, {"tokens_per_s", 12345.0}}});
    sink.flush();
    // Flushed: readable while the sink is still open.
    EXPECT_EQ(lines_of(read_file(path.string())).size(), 3u);
  }
  const std::vector<std::string> lines = lines_of(read_file(path.string()));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("{\"step\":0,", 0), 0u) << lines[0];  // "step" comes first
  const json a = json::parse(lines[0]), b = json::parse(lines[1]), c = json::parse(lines[2]);
  EXPECT_EQ(a.at("loss").get<double>(), 10.25);
  EXPECT_EQ(a.at("lr").get<double>(), 3e-4);
  EXPECT_TRUE(a.at("grad_norm").is_null());
  EXPECT_EQ(b.at("step"), 1);
  EXPECT_EQ(b.at("loss").get<double>(), 0.1 + 0.2);  // shortest round-trip digits, exact
  EXPECT_EQ(b.at("lr").get<double>(), 1.0 / 3.0);
  EXPECT_TRUE(b.at("grad_norm").is_null());
  EXPECT_TRUE(c.at("loss").is_null());
  EXPECT_EQ(c.at("tokens_per_s").get<double>(), 12345.0);
  EXPECT_EQ(c.size(), 3u);
}

TEST(JsonlMetrics, ReopeningAppends) {
  const TempDir dir;
  const fs::path path = dir.path() / "metrics.jsonl";
  { JsonlMetricsSink(path).write({0, {{"loss", 1.0}}}); }
  { JsonlMetricsSink(path).write({1, {{"loss", 2.0}}}); }
  EXPECT_EQ(steps_in(path), (std::vector<std::int64_t>{0, 1}));
}

TEST(JsonlMetrics, TruncateAfterStepDropsLaterLinesOnResume) {
  const TempDir dir;
  const fs::path path = dir.path() / "metrics.jsonl";
  {
    JsonlMetricsSink sink(path);
    for (std::int64_t s = 0; s < 6; ++s)
      sink.write({s, {{"loss", 1.0 / static_cast<double>(s + 1)}}});
  }
  // A killed run may leave a torn last line.
  std::string text = read_file(path.string()) + "{\"step\":6,\"lo";
  dir.write("metrics.jsonl", text);
  {
    JsonlMetricsSink sink(path, /*truncate_after_step=*/3);  // resumed from step 3's checkpoint
    EXPECT_EQ(steps_in(path), (std::vector<std::int64_t>{0, 1, 2, 3}));
    for (std::int64_t s = 4; s < 8; ++s)
      sink.write({s, {{"loss", 0.5}}});
  }
  EXPECT_EQ(steps_in(path), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Kept lines are byte for byte what was there.
  EXPECT_EQ(lines_of(read_file(path.string()))[1], lines_of(text)[1]);
  // Truncating at or beyond the last step changes nothing; truncating a missing file creates it.
  const std::string before = read_file(path.string());
  { JsonlMetricsSink sink(path, 7); }
  EXPECT_EQ(read_file(path.string()), before);
  { JsonlMetricsSink sink(dir.path() / "fresh.jsonl", 10); }
  EXPECT_TRUE(fs::exists(dir.path() / "fresh.jsonl"));
  // Truncating before the first step empties it.
  { JsonlMetricsSink sink(path, 0); }
  EXPECT_EQ(steps_in(path), (std::vector<std::int64_t>{0}));
}

TEST(JsonlMetrics, ErrorsNameTheFile) {
  const TempDir dir;
  fs::create_directories(dir.path() / "a_folder");
  try {
    JsonlMetricsSink sink(dir.path() / "a_folder");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a_folder"), std::string::npos) << e.what();
  }
  JsonlMetricsSink sink(dir.path() / "m.jsonl");
  EXPECT_THROW(sink.write({0, {{"step", 1.0}}}), Error);
}

// ---- CRC-32C ----

TEST(Crc32c, StandardCheckValueAndMask) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // 32 zero bytes: the iSCSI test vector of RFC 3720 (B.4).
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::uint32_t crc = crc32c("123456789", 9);
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
}

// ---- TensorBoard: our own reader of what we wrote ----

struct Event {
  std::optional<double> wall_time;
  std::int64_t step = 0;
  std::optional<std::string> file_version;
  std::vector<std::pair<std::string, float>> values;  // summary.value: tag, simple_value
  std::optional<std::uint64_t> session_status;        // session_log.status
};

// A cursor over protobuf wire bytes; any malformation fails the test through `ok`.
struct Wire {
  std::string_view bytes;
  std::size_t pos = 0;
  bool ok = true;

  bool done() const { return pos >= bytes.size(); }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= bytes.size()) break;
      const auto b = static_cast<unsigned char>(bytes[pos++]);
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    ok = false;
    return 0;
  }
  std::string_view take(std::size_t n) {
    if (n > bytes.size() - pos) {
      ok = false;
      return {};
    }
    const std::string_view out = bytes.substr(pos, n);
    pos += n;
    return out;
  }
  template <typename T>
  T fixed() {
    T value{};
    const std::string_view b = take(sizeof(T));
    if (ok) std::memcpy(&value, b.data(), sizeof(T));
    return value;
  }
};

Event parse_event(std::string_view payload) {
  Event event;
  Wire w{payload};
  while (w.ok && !w.done()) {
    const std::uint64_t key = w.varint();
    const std::uint64_t field = key >> 3, type = key & 7;
    if (field == 1 && type == 1) {
      event.wall_time = w.fixed<double>();
    } else if (field == 2 && type == 0) {
      event.step = static_cast<std::int64_t>(w.varint());
    } else if (field == 3 && type == 2) {
      event.file_version = std::string(w.take(w.varint()));
    } else if (field == 5 && type == 2) {
      Wire summary{w.take(w.varint())};
      while (summary.ok && !summary.done()) {
        EXPECT_EQ(summary.varint(), (1u << 3) | 2u) << "Summary.value";
        Wire value{summary.take(summary.varint())};
        std::string tag;
        float simple = kNan;
        while (value.ok && !value.done()) {
          const std::uint64_t k = value.varint();
          if (k == ((1u << 3) | 2u)) {
            tag = std::string(value.take(value.varint()));
          } else if (k == ((2u << 3) | 5u)) {
            simple = value.fixed<float>();
          } else {
            ADD_FAILURE() << "unexpected Value key " << k;
            value.ok = false;
          }
        }
        EXPECT_TRUE(value.ok);
        event.values.emplace_back(tag, simple);
      }
      EXPECT_TRUE(summary.ok);
    } else if (field == 7 && type == 2) {
      Wire session_log{w.take(w.varint())};
      EXPECT_EQ(session_log.varint(), (1u << 3) | 0u) << "SessionLog.status";
      event.session_status = session_log.varint();
      EXPECT_TRUE(session_log.ok && session_log.done());
    } else {
      ADD_FAILURE() << "unexpected Event key " << key;
      break;
    }
  }
  EXPECT_TRUE(w.ok) << "truncated protobuf";
  return event;
}

// Splits a TFRecord stream, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> records;
  std::size_t pos = 0;
  while (pos < file.size()) {
    EXPECT_GE(file.size() - pos, 12u) << "truncated record header at " << pos;
    if (file.size() - pos < 12) break;
    std::uint64_t length = 0;
    std::uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, file.data() + pos, 8);
    std::memcpy(&length_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(length_crc, masked_crc32c(file.data() + pos, 8)) << "record at " << pos;
    EXPECT_LE(length, file.size() - pos - 16) << "record at " << pos;
    if (length > file.size() - pos - 16) break;
    records.emplace_back(file.substr(pos + 12, length));
    std::memcpy(&data_crc, file.data() + pos + 12 + length, 4);
    EXPECT_EQ(data_crc, masked_crc32c(records.back().data(), length)) << "record at " << pos;
    pos += 16 + length;
  }
  return records;
}

// 3 steps x 2 scalars, one of them NaN at step 20.
void write_run(const fs::path& dir, fs::path& file) {
  TensorBoardSink sink(dir);
  file = sink.file();
  sink.write({0, {{"loss", 9.5}, {"lr", 1e-4}}});
  sink.write({10, {{"loss", 3.25}, {"lr", 3e-4}}});
  sink.write({20, {{"loss", kNan}, {"lr", 2.9e-4}}});
  sink.flush();
}

TEST(TensorBoard, RecordsParseBackWithValidCrcs) {
  const TempDir dir;
  fs::path file;
  write_run(dir.path() / "tb", file);
  EXPECT_EQ(file.parent_path(), dir.path() / "tb");
  const std::string name = file.filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(fmt::format(".{}.", ::getpid())), std::string::npos) << name;

  const std::vector<std::string> records = read_records(read_file(file.string()));
  ASSERT_EQ(records.size(), 4u);
  const Event first = parse_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_EQ(first.step, 0);
  ASSERT_TRUE(first.wall_time.has_value());
  EXPECT_GT(*first.wall_time, 1.6e9);

  const std::int64_t steps[] = {0, 10, 20};
  const float losses[] = {9.5f, 3.25f, std::numeric_limits<float>::quiet_NaN()};
  const float lrs[] = {1e-4f, 3e-4f, 2.9e-4f};
  for (int i = 0; i < 3; ++i) {
    const Event e = parse_event(records[i + 1]);
    EXPECT_EQ(e.step, steps[i]);
    EXPECT_FALSE(e.file_version.has_value());
    ASSERT_TRUE(e.wall_time.has_value());
    EXPECT_GE(*e.wall_time, *first.wall_time);
    ASSERT_EQ(e.values.size(), 2u);
    EXPECT_EQ(e.values[0].first, "train/loss");  // the map's order: by name
    EXPECT_EQ(e.values[1].first, "train/lr");
    if (std::isnan(losses[i]))
      EXPECT_TRUE(std::isnan(e.values[0].second));
    else
      EXPECT_EQ(e.values[0].second, losses[i]);
    EXPECT_EQ(e.values[1].second, lrs[i]);
  }
}

TEST(TensorBoard, NegativeStepsAndTwoSinksInOneSecond) {
  const TempDir dir;
  fs::path a, b;
  {
    TensorBoardSink sink_a(dir.path());
    TensorBoardSink sink_b(dir.path());  // same second, same pid: a second name, nothing lost
    a = sink_a.file();
    b = sink_b.file();
    sink_a.write({-3, {{"x", 1.0}}});
  }
  EXPECT_NE(a, b);
  const std::vector<std::string> records = read_records(read_file(a.string()));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(parse_event(records[1]).step, -3);  // int64 as a 10-byte varint
  EXPECT_EQ(read_records(read_file(b.string())).size(), 1u);
}

// A resumed run's file marks the restart as TensorFlow does: a SessionLog START event at the
// first step it writes, right after the file_version event; a fresh run's file has none.
TEST(TensorBoard, ResumeWritesASessionStartAtTheRestartStep) {
  const TempDir dir;
  fs::path file;
  {
    TensorBoardSink sink(dir.path(), 41);
    file = sink.file();
    sink.write({41, {{"loss", 2.0}}});
  }
  const std::vector<std::string> records = read_records(read_file(file.string()));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(parse_event(records[0]).file_version, "brain.Event:2");
  const Event start = parse_event(records[1]);
  EXPECT_EQ(start.step, 41);
  EXPECT_EQ(start.session_status, 1u);  // SessionLog.START
  EXPECT_TRUE(start.values.empty());
  // The bytes after wall_time (key 0x09 and 8 bytes): step 41, then field 7 (session_log,
  // length-delimited: key 0x3a) holding 2 bytes: field 1 varint (key 0x08) = 1.
  EXPECT_EQ(records[1].substr(9), std::string("\x10\x29\x3a\x02\x08\x01", 6));
  EXPECT_EQ(parse_event(records[2]).step, 41);

  fs::path fresh;
  { fresh = TensorBoardSink(dir.path() / "fresh").file(); }
  for (const std::string& r : read_records(read_file(fresh.string())))
    EXPECT_FALSE(parse_event(r).session_status.has_value());
}

// ---- TensorBoard: the Python package reads what we write ----

// A killed run wrote steps 1..5 (checkpoint at 3); the resumed run writes 4..6 into a second
// file with its restart mark. tensorboard's EventAccumulator must show 1..3 from the first file
// and 4..6 from the second, the dead run's 4 and 5 dropped.
TEST(TensorBoard, PythonTensorboardDropsADeadRunsStepsAfterAResume) {
  const char* env = std::getenv("ANCHORCTX_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import tensorboard' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import tensorboard";
  const TempDir dir;
  {
    TensorBoardSink dead(dir.path() / "tb");
    for (int step = 1; step <= 5; ++step)
      dead.write({step, {{"loss", 10.0 + step}}});
  }
  {
    TensorBoardSink resumed(dir.path() / "tb", 4);  // same second: a later name, read after
    for (int step = 4; step <= 6; ++step)
      resumed.write({step, {{"loss", 20.0 + step}}});
  }
  const json expected = {
      {"scalars",
       {{"train/loss", {{1, 11.0}, {2, 12.0}, {3, 13.0}, {4, 24.0}, {5, 25.0}, {6, 26.0}}}}}};
  const std::string expected_path = dir.write("expected.json", expected.dump());
  const fs::path script = fs::path(ANCHORCTX_TESTS_DIR) / "train" / "read_tensorboard.py";
  const std::string cmd = fmt::format("{} '{}' '{}' '{}'", python, script.string(),
                                      (dir.path() / "tb").string(), expected_path);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(TensorBoard, PythonTensorboardReadsWhatWeWrite) {
  const char* env = std::getenv("ANCHORCTX_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import tensorboard' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import tensorboard";
  const TempDir dir;
  fs::path file;
  write_run(dir.path() / "tb", file);
  const json expected = {
      {"scalars",
       {{"train/loss",
         {{0, static_cast<double>(9.5f)}, {10, static_cast<double>(3.25f)}, {20, nullptr}}},
        {"train/lr",
         {{0, static_cast<double>(1e-4f)},
          {10, static_cast<double>(3e-4f)},
          {20, static_cast<double>(2.9e-4f)}}}}}};
  const std::string expected_path = dir.write("expected.json", expected.dump());
  const fs::path script = fs::path(ANCHORCTX_TESTS_DIR) / "train" / "read_tensorboard.py";
  const std::string cmd = fmt::format("{} '{}' '{}' '{}'", python, script.string(),
                                      (dir.path() / "tb").string(), expected_path);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

}  // namespace
}  // namespace anchorctx::train
