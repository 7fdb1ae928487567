// MappedFile: a whole file mapped read-only, unmapped when the object goes away.
//
// Readers of large artefacts (packed datasets) map them instead of reading them, so opening a
// multi-gigabyte folder costs nothing until a window is touched, and pages are shared between
// processes that read the same data.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace anchorctx::core {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only. Throws anchorctx::Error naming the file and the system's reason when
  // it cannot be opened or mapped. An empty file gives an empty view (nothing is mapped).
  static MappedFile open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

}  // namespace anchorctx::core
