// AtomicFile: O_EXCL temporary file, write(2) loop, fsync, rename(2), fsync of the folder.
#include "anchorctx/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace fs = std::filesystem;

AtomicFile::AtomicFile(fs::path final_path) : final_(std::move(final_path)) {
  fs::path parent = final_.parent_path();
  if (parent.empty()) parent = ".";
  // A killed writer's temporary of this name (a whole model for convert to-llama2c) stayed
  // for good: the next writer removes those of dead processes, as AtomicDir does for folders.
  sweep_stale_temporaries(parent, "." + final_.filename().string() + ".tmp-");
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = parent / ("." + final_.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                      "-" + std::to_string(counter++));
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) return;
    if (errno != EEXIST)
      fail("{}: cannot create {}: {}", final_.string(), temp_.string(), std::strerror(errno));
  }
  fail("{}: cannot find a free temporary name", final_.string());
}

AtomicFile::~AtomicFile() {
  if (committed_ || temp_.empty()) return;
  if (fd_ >= 0) ::close(fd_);
  std::error_code ec;
  fs::remove(temp_, ec);  // best effort: a destructor must not throw
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  require(fd_ >= 0, "{}: write after sync", final_.string());
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ::ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", temp_.string(), std::strerror(errno));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::write(std::string_view text) {
  write(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

void AtomicFile::sync() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", temp_.string(), std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("{}: close failed: {}", temp_.string(), std::strerror(errno));
}

void AtomicFile::commit() {
  require(!committed_, "{}: committed twice", final_.string());
  sync();  // on failure the destructor removes the temporary file
  if (::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    fail("{}: cannot rename {} into place: {}", final_.string(), temp_.string(),
         std::strerror(err));
  }
  committed_ = true;
  // Make the rename itself durable; failure here leaves a complete file, so it is not fatal.
  fs::path parent = final_.parent_path();
  if (parent.empty()) parent = ".";
  const int dfd = ::open(parent.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void AtomicFileSet::add(const std::string& name, std::string_view bytes) {
  auto file = std::make_unique<AtomicFile>(dir_ / name);
  file->write(bytes);
  file->sync();
  files_.push_back(std::move(file));
}

void AtomicFileSet::commit(std::initializer_list<std::string_view> owned) {
  for (const std::unique_ptr<AtomicFile>& file : files_)
    file->commit();
  for (const std::string_view name : owned) {
    const fs::path path = dir_ / name;
    const bool staged = std::any_of(files_.begin(), files_.end(),
                                    [&](const auto& f) { return f->final_path() == path; });
    std::error_code ec;
    if (!staged && fs::remove(path, ec) == false && ec)
      fail("{}: cannot remove the previous report's file: {}", path.string(), ec.message());
  }
  files_.clear();
}

void write_file_atomic(const fs::path& path, std::string_view text) {
  AtomicFile file(path);
  file.write(text);
  file.commit();
}

void copy_file_atomic(const fs::path& from, const fs::path& to) {
  const int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open it to copy: {}", from.string(), std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    fail("{}: not a regular file to copy", from.string());
  AtomicFile out(to);
  std::vector<std::byte> buffer(std::size_t{4} << 20);
  while (true) {
    const ::ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("{}: read failed: {}", from.string(), std::strerror(errno));
    if (n == 0) break;
    out.write(std::span(buffer.data(), static_cast<std::size_t>(n)));
  }
  out.commit();
}

}  // namespace anchorctx::core
