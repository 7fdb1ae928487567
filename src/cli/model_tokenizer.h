// The tokenizer of a model folder for the commands that read one (eval, rope-drift): the one
// asked for, else the folder's own file, else the byte tokenizer where the model was made for
// it (the demo's and the study's models). A model of another vocabulary without a tokenizer file
// is refused: its ids read as bytes made every score meaningless, said only by a note.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/config.h"

namespace anchorctx::cli {

inline std::string model_tokenizer_spec(const std::string& command, const std::string& model_dir,
                                        const std::string& requested,
                                        const model::LlamaConfig& config) {
  if (!requested.empty()) return requested;
  if (data::folder_tokenizer_file(model_dir)) return model_dir;
  const std::int32_t byte_vocab = data::make_byte_tokenizer()->vocab_size();
  if (config.vocab_size != byte_vocab)
    fail(
        "{}: {} holds no tokenizer file (tokenizer.json, tokenizer.model or tokenizer.bin) and "
        "its vocabulary of {} is not the byte tokenizer's {}: pass --tokenizer",
        command, model_dir, config.vocab_size, byte_vocab);
  std::fprintf(stderr, "%s: no tokenizer file in %s: using the byte tokenizer (its vocabulary)\n",
               command.c_str(), model_dir.c_str());
  return "byte";
}

}  // namespace anchorctx::cli
