// AtomicDir: temporary folder, fsync, rename.
#include "anchorctx/core/atomic_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace fs = std::filesystem;
namespace {

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open to sync: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail("{}: fsync failed: {}", p.string(), std::strerror(err));
}

}  // namespace

void sweep_stale_temporaries(const fs::path& dir, std::string_view prefix) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::size_t tmp = name.rfind(".tmp-");
    if (!name.starts_with(prefix) || tmp == std::string::npos) continue;
    long pid = 0;
    const char* first = name.data() + tmp + 5;
    const auto [end_pid, pec] = std::from_chars(first, name.data() + name.size(), pid);
    if (pec != std::errc() || end_pid == first || *end_pid != '-' || pid <= 0 || pid == ::getpid())
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive
    stale.push_back(it->path());
  }
  for (const fs::path& p : stale)
    fs::remove_all(p, ec);  // another sweeper may race us to it
}

AtomicDir::AtomicDir(fs::path final_path, bool replace)
    : final_(std::move(final_path)), replace_(replace) {
  if (final_.filename().empty()) final_ = final_.parent_path();  // "out/" -> "out"
  std::error_code ec;
  if (fs::exists(final_, ec) && !replace_)
    fail("{}: already exists (remove it or choose another --out)", final_.string());
  fs::path parent = final_.parent_path();
  if (parent.empty()) parent = ".";
  fs::create_directories(parent, ec);
  if (ec) fail("{}: cannot create the parent folder: {}", parent.string(), ec.message());
  sweep_stale_temporaries(parent, "." + final_.filename().string() + ".tmp-");
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = parent / ("." + final_.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                      "-" + std::to_string(counter++));
    if (fs::create_directory(temp_, ec)) return;
    if (ec) fail("{}: cannot create: {}", temp_.string(), ec.message());
  }
  fail("{}: cannot find a free temporary name", final_.string());
}

AtomicDir::~AtomicDir() {
  if (committed_ || temp_.empty()) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);  // best effort: a destructor must not throw
}

void AtomicDir::commit() {
  require(!committed_, "{}: committed twice", final_.string());
  for (const auto& entry : fs::recursive_directory_iterator(temp_)) {
    if (entry.is_regular_file()) fsync_path(entry.path(), false);
  }
  fsync_path(temp_, true);
  // A replaced folder is renamed aside (atomic) before the new one is renamed in, and deleted
  // only then: a kill at any moment leaves the old or the new folder under the final name, never
  // a half-deleted one (the aside name is a temporary one, swept once its process is gone).
  std::error_code ec;
  fs::path old;
  if (replace_ && fs::exists(fs::symlink_status(final_, ec))) {
    old = temp_;
    old += "-old";
    fs::rename(final_, old, ec);
    if (ec) fail("{}: cannot move the old folder aside: {}", final_.string(), ec.message());
  }
  fs::rename(temp_, final_, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!old.empty()) fs::rename(old, final_, ec);  // put the old folder back
    fail("{}: cannot rename {} into place: {}", final_.string(), temp_.string(), why);
  }
  committed_ = true;
  fs::path parent = final_.parent_path();
  fsync_path(parent.empty() ? fs::path(".") : parent, true);
  if (!old.empty()) fs::remove_all(old, ec);  // best effort: a leftover is a stale temporary
}

}  // namespace anchorctx::core
