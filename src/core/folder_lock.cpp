// FolderLock: flock(2) on <dir>/anchorctx.lock with the holder's pid inside (see folder_lock.h).
#include "anchorctx/core/folder_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace fs = std::filesystem;

FolderLock FolderLock::acquire(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the {}: {}", dir.string(), what, ec.message());
  const fs::path path = dir / kFileName;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open the lock file: {}", path.string(), std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof(text) - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) fail("{}: cannot lock: {}", path.string(), std::strerror(err));
    std::string pid = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
    pid = pid.substr(0, pid.find_first_not_of("0123456789"));
    fail(
        "{}: the {} is in use by another anchorctx process (pid {}, holding {}); one process "
        "writes a {} at a time: wait for it to end or choose another --out",
        dir.string(), what, pid.empty() ? std::string("not yet written") : pid, path.string(),
        what);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot write the lock file: {}", path.string(), std::strerror(err));
  }
  return FolderLock(fd);
}

FolderLock& FolderLock::operator=(FolderLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

}  // namespace anchorctx::core
