// HashStream: XXH3-128 over bytes that arrive in pieces, printed as core/hash.h prints it
// (32 lowercase hex digits, canonical order), so a hash taken while reading or writing a file
// equals core::hash_file_hex of the same file.
#pragma once

#include <xxhash.h>

#include <new>
#include <string>

#include <fmt/format.h>

namespace anchorctx::data {

class HashStream {
 public:
  HashStream() : state_(XXH3_createState()) {
    if (state_ == nullptr) throw std::bad_alloc();
    XXH3_128bits_reset(state_);
  }
  ~HashStream() { XXH3_freeState(state_); }
  HashStream(const HashStream&) = delete;
  HashStream& operator=(const HashStream&) = delete;

  void update(const void* data, std::size_t n) { XXH3_128bits_update(state_, data, n); }
  std::string hex() const {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state_));
    std::string out;
    out.reserve(32);
    for (const unsigned char byte : canonical.digest)
      fmt::format_to(std::back_inserter(out), "{:02x}", byte);
    return out;
  }

 private:
  XXH3_state_t* state_;
};

}  // namespace anchorctx::data
