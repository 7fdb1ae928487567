// TensorBoard event files (see metrics.h), written without TensorFlow or libprotobuf.
//
// An event file is a TFRecord stream; each record is
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | payload
//   | uint32 masked_crc32c(payload)
// and each payload a serialized tensorflow.Event. We write these of its fields:
//   Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
//                Summary summary = 5; SessionLog session_log = 7; }
//   Summary    { repeated Value value = 1; }
//   Value      { string tag = 1; float simple_value = 2; }
//   SessionLog { SessionStatus status = 1; }   (enum SessionStatus: START = 1)
// Protobuf's wire format for these is small: a key varint (field << 3 | wire type), then a
// varint (int64), 8 or 4 little-endian bytes (double, float) or a length varint and the bytes
// (string, sub-message). Why not libprotobuf: for three fields it would bring a 10 MB dependency
// and a .proto build step in place of the ~60 lines below; the format is frozen, and the tests
// check it both by parsing our records back and with tensorboard's own EventAccumulator.
// Why CRC-32C by a table here: Google's crc32c library has no Debian package, and a
// byte-at-a-time table is plenty for the few hundred bytes a step writes.
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "anchorctx/train/metrics.h"

namespace anchorctx::train {
namespace {

namespace fs = std::filesystem;

// The CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of every byte value.
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<std::uint32_t, 256> kCrcTable = make_crc_table();

// ---- protobuf wire format: just what Event needs ----
enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, std::uint32_t field, WireType type) {
  put_varint(out, (field << 3) | type);
}

template <typename T>
void put_little_endian(std::string& out, T value) {
  static_assert(std::endian::native == std::endian::little, "event files are little-endian");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, std::uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// Event.wall_time and Event.step, the start of every event.
std::string event_header(std::int64_t step) {
  const double wall_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string event;
  put_key(event, 1, kFixed64);
  put_little_endian(event, wall_time);
  put_key(event, 2, kVarint);
  put_varint(event, static_cast<std::uint64_t>(step));  // two's complement, as protobuf's int64
  return event;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Creates the file exclusively; a second sink in the same second gets a numbered name.
std::FILE* create_event_file(const fs::path& dir, fs::path& path) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string base =
      fmt::format("events.out.tfevents.{}.{}.{}.anchorctx", now, host_name(), ::getpid());
  for (int n = 0;; ++n) {
    path = dir / (n == 0 ? base : fmt::format("{}.{}", base, n));
    if (std::FILE* file = std::fopen(path.c_str(), "wbx")) return file;
    if (errno != EEXIST || n >= 1000)
      fail("{}: cannot create the event file: {}", path.string(), std::strerror(errno));
  }
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i)
    crc = kCrcTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const void* data, std::size_t size) {
  const std::uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

TensorBoardSink::TensorBoardSink(const fs::path& dir, std::int64_t restart_step) {
  fs::create_directories(dir);
  file_ = create_event_file(dir, path_);
  std::string event = event_header(0);
  put_bytes(event, 3, "brain.Event:2");
  write_record(event);
  if (restart_step >= 0) {
    constexpr std::uint64_t kSessionStart = 1;  // SessionLog.SessionStatus.START
    std::string session_log;
    put_key(session_log, 1, kVarint);
    put_varint(session_log, kSessionStart);
    std::string start = event_header(restart_step);
    put_bytes(start, 7, session_log);
    write_record(start);
  }
  flush();
}

TensorBoardSink::~TensorBoardSink() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardSink::write(const StepMetrics& metrics) {
  std::string summary;
  for (const auto& [name, value] : metrics.scalars) {
    std::string v;
    put_bytes(v, 1, "train/" + name);
    put_key(v, 2, kFixed32);
    put_little_endian(v, static_cast<float>(value));
    put_bytes(summary, 1, v);
  }
  std::string event = event_header(metrics.step);
  put_bytes(event, 5, summary);
  write_record(event);
}

void TensorBoardSink::flush() {
  if (std::fflush(file_) != 0) fail("{}: flush failed: {}", path_.string(), std::strerror(errno));
}

void TensorBoardSink::write_record(const std::string& payload) {
  std::string record;
  put_little_endian(record, static_cast<std::uint64_t>(payload.size()));
  put_little_endian(record, masked_crc32c(record.data(), 8));
  record += payload;
  put_little_endian(record, masked_crc32c(payload.data(), payload.size()));
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size())
    fail("{}: write failed: {}", path_.string(), std::strerror(errno));
}

}  // namespace anchorctx::train
