// read_regular_file: open(2) with O_NONBLOCK (a FIFO must not block), fstat, read(2) loop.
// parse_json: one scan for NUL bytes and nesting depth outside strings, then nlohmann.
#include "anchorctx/core/json_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace {

// Closes a descriptor on every path out of read_regular_file.
struct Descriptor {
  int fd;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

// The deepest nesting of `text` outside strings; throws at a NUL byte (anywhere: JSON has none).
void check_bytes_and_depth(std::string_view text, std::string_view source) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\0') fail("{}: not valid JSON: a NUL byte at offset {}", source, i);
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        fail(
            "{}: JSON nested deeper than {} levels (at offset {}); no real file of this kind nests "
            "so deep",
            source, kMaxJsonDepth, i);
    } else if (c == ']' || c == '}') {
      --depth;  // unbalanced text is the parser's to report
    }
  }
}

}  // namespace

std::string read_regular_file(const std::filesystem::path& path, std::string_view what) {
  const Descriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (file.fd < 0) fail("{}: cannot open {}: {}", path.string(), what, std::strerror(errno));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0)
    fail("{}: cannot stat {}: {}", path.string(), what, std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail("{}: not a regular file ({}; {} must be a file)", path.string(),
         S_ISDIR(st.st_mode)    ? "a folder"
         : S_ISFIFO(st.st_mode) ? "a FIFO"
                                : "a device or socket",
         what);
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::read(file.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("{}: read failed: {}", path.string(), std::strerror(errno));
    if (n == 0) break;  // shrunk while read: what is there
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

nlohmann::json parse_json(std::string_view text, std::string_view source) {
  check_bytes_and_depth(text, source);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond a double ("1e999"): that one escaped
    // as nlohmann's text, naming no file.
    fail("{}: not valid JSON: {}", source, e.what());
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path, std::string_view what) {
  return parse_json(read_regular_file(path, what), path.string());
}

}  // namespace anchorctx::core
