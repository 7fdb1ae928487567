// XXH3-128 content hashes (hash.h).
#include "anchorctx/core/hash.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <xxhash.h>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace {

// The canonical form is big-endian (high half first): the order xxh128sum prints.
std::string to_hex(XXH128_hash_t hash) {
  return fmt::format("{:016x}{:016x}", hash.high64, hash.low64);
}

}  // namespace

std::string hash_bytes_hex(std::string_view bytes) {
  return to_hex(XXH3_128bits(bytes.data(), bytes.size()));
}

std::string hash_file_hex(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) fail("'{}': cannot open it for hashing: {}", path, std::strerror(errno));
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(),
                                                                        &XXH3_freeState);
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) fail("'{}': cannot hash it", path);
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0) XXH3_128bits_update(state.get(), buffer.data(), n);
    if (n < buffer.size()) break;
  }
  if (std::ferror(file.get())) fail("'{}': read error while hashing it", path);
  return to_hex(XXH3_128bits_digest(state.get()));
}

}  // namespace anchorctx::core
