// The files that carry a training tokenizer into a model folder, so the folder is complete:
// `anchorctx generate` and transformers' AutoTokenizer.from_pretrained(folder) both find it.
//
// The byte tokenizer has no file of its own; it is written as a HuggingFace tokenizer.json that
// encodes exactly as it does (see byte_tokenizer_hf.cpp), with tokenizer_config.json and
// special_tokens_map.json. A tokenizer loaded from a file is carried by copying that file (and,
// when the spec is a folder, the HuggingFace side files next to it).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::data {

struct TokenizerFile {
  std::string name;     // a plain file name (no folder)
  std::string content;  // the bytes
};

// tokenizer.json, tokenizer_config.json and special_tokens_map.json of the byte tokenizer:
// ids 0..255 are the bytes (GPT-2's byte-to-character table, no merges, so every byte is its
// own token whatever the text), 256 <bos>, 257 <eos>, 258 <pad> as vocabulary entries that no
// text can produce, and a post-processor that prepends <bos> as `anchorctx tokenize` does.
std::vector<TokenizerFile> byte_tokenizer_hf_files();

// The files that make up the tokenizer `spec` (as load_tokenizer takes it): empty for "byte";
// the file itself; for a folder, the tokenizer file load_tokenizer picks plus the side files
// present (tokenizer_config.json, special_tokens_map.json, added_tokens.json). Throws
// anchorctx::Error naming the spec when it is neither.
std::vector<std::filesystem::path> tokenizer_source_files(std::string_view spec);

// The name load_tokenizer looks for in a model folder for a tokenizer of `kind` (Tokenizer::
// kind(): "hf_bpe" tokenizer.json, "sentencepiece" tokenizer.model, "llama2c" tokenizer.bin).
// A tokenizer file copied into a checkpoint takes it: under its own name (tok512.bin) generate
// found none and eval fell back to the byte tokenizer. Throws anchorctx::Error for another kind.
std::string tokenizer_file_name(std::string_view kind);

}  // namespace anchorctx::data
