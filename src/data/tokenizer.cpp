// load_tokenizer: "byte", or a file (or folder) whose kind is recognised from its name and
// first bytes.
#include "anchorctx/data/tokenizer.h"

#include <filesystem>
#include <fstream>

#include "anchorctx/core/error.h"
#include "data/tokenizers/loaders.h"

namespace anchorctx::data {

std::unique_ptr<Tokenizer> load_tokenizer(std::string_view spec) {
  if (spec == "byte") return make_byte_tokenizer();
  namespace fs = std::filesystem;
  fs::path path(spec);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "tokenizer.json")) return load_hf_tokenizer_json(path / "tokenizer.json");
    if (fs::exists(path / "tokenizer.model"))
      return load_sentencepiece_model(path / "tokenizer.model");
    if (fs::exists(path / "tokenizer.bin")) return load_llama2c_tokenizer(path / "tokenizer.bin");
    fail("tokenizer '{}': a folder without tokenizer.json, tokenizer.model or tokenizer.bin",
         std::string(spec));
  }
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "tokenizer '{}': cannot open it (not 'byte' and not a readable file)",
          std::string(spec));
  char first = 0;
  in.read(&first, 1);
  require(in.gcount() == 1, "tokenizer '{}': the file is empty", std::string(spec));
  const std::string ext = path.extension().string();
  if (ext == ".json" || first == '{') return load_hf_tokenizer_json(path.string());
  if (ext == ".model") return load_sentencepiece_model(path.string());
  if (ext == ".bin") return load_llama2c_tokenizer(path.string());
  fail(
      "tokenizer '{}': unknown kind (expected 'byte', a tokenizer.json, a SentencePiece .model "
      "or a llama2.c .bin)",
      std::string(spec));
}

}  // namespace anchorctx::data
