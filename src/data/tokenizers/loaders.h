// Loaders of each tokenizer kind, called by load_tokenizer (tokenizer.cpp) once it has
// recognised a file. Each throws anchorctx::Error naming the file on a bad or unreadable one.
#pragma once

#include <memory>
#include <string>

#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {

// HuggingFace tokenizer.json (BPE models): hf_bpe_tokenizer.cpp.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);
// SentencePiece model protobuf, through the sentencepiece library: sentencepiece_tokenizer.cpp.
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path);
// llama2.c tokenizer.bin: llama2c_tokenizer.cpp.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);

}  // namespace anchorctx::data
