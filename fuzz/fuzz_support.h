// Helpers shared by the libFuzzer targets of fuzz/: a per-process temporary file for loaders
// that take a path, a check that reports a finding, and a strict UTF-8 test.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "anchorctx/core/utf8.h"

namespace anchorctx::fuzz {

// A file under the temporary folder, unique to this process (libFuzzer's -jobs/-workers run
// several), rewritten for every input and removed at exit.
class ScratchFile {
 public:
  explicit ScratchFile(std::string_view name) {
    path_ = (std::filesystem::temp_directory_path() /
             ("anchorctx-fuzz-" + std::to_string(::getpid()) + "-" + std::string(name)))
                .string();
  }
  ~ScratchFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  // Replaces the file's content with `bytes`; returns its path.
  const std::string& write(std::string_view bytes) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::fprintf(stderr, "fuzz: cannot write %s\n", path_.c_str());
      std::abort();
    }
    return path_;
  }

 private:
  std::string path_;
};

// A broken promise: print what and abort, which libFuzzer reports as a crash with the input.
[[noreturn]] inline void finding(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "FUZZ FINDING: %s %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

inline bool valid_utf8(std::string_view s) {
  return core::is_valid_utf8(s);
}

}  // namespace anchorctx::fuzz
