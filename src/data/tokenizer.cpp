// load_tokenizer: "byte", or a file (or folder) whose kind is recognised from its name and
// first bytes.
#include "anchorctx/data/tokenizer.h"

#include <filesystem>

#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "data/tokenizers/loaders.h"

namespace anchorctx::data {

std::optional<std::filesystem::path> folder_tokenizer_file(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"}) {
    // symlink_status with an error code: a symbolic-link loop is a file that is there, and its
    // loader names it; exists() without one let libstdc++'s "filesystem error" text escape.
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir / name, ec))) return dir / name;
  }
  return std::nullopt;
}

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view spec) {
  if (spec == "byte") return make_byte_tokenizer();
  namespace fs = std::filesystem;
  fs::path path(spec);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (const auto file = folder_tokenizer_file(path)) return load_tokenizer(file->string());
    fail("tokenizer '{}': a folder without tokenizer.json, tokenizer.model or tokenizer.bin",
         std::string(spec));
  }
  const std::string ext = path.extension().string();
  if (ext == ".json") return load_hf_tokenizer_json(path.string());
  if (ext == ".model") return load_sentencepiece_model(path.string());
  if (ext == ".bin") return load_llama2c_tokenizer(path.string());
  // Another name: a tokenizer.json is recognised by its first byte. Read through the same
  // checks as the loaders (a FIFO must not block, a folder is not a file).
  const std::string bytes = core::read_regular_file(path, "the tokenizer ('byte' or a file)");
  require(!bytes.empty(), "tokenizer '{}': the file is empty", std::string(spec));
  if (bytes.front() == '{') return load_hf_tokenizer_json(path.string());
  fail(
      "tokenizer '{}': unknown kind (expected 'byte', a tokenizer.json, a SentencePiece .model "
      "or a llama2.c .bin)",
      std::string(spec));
}

}  // namespace anchorctx::data
