// The training tokenizer, carried into every checkpoint so a checkpoint folder is a complete
// model folder: `anchorctx generate` and transformers' AutoTokenizer.from_pretrained load it.
#pragma once

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

namespace anchorctx::train {

// Writes the files of the dataset's tokenizer (meta.json's "tokenizer": its spec and content
// hash) into `<run_dir>/tokenizer/` (an atomic folder, replaced) and returns their paths, for
// the checkpoints to copy. The byte tokenizer is written as HuggingFace files
// (data/tokenizer_files.h); a tokenizer from a file is copied when its spec still names that
// file with the same content hash. Otherwise (a relative spec from another folder, a changed
// file) nothing is written, a warning on stderr says so and how to pass the files with
// --copy-file, and the result is empty. Throws anchorctx::Error when the folder cannot be
// written.
std::vector<std::filesystem::path> prepare_run_tokenizer(const nlohmann::json& dataset_meta,
                                                         const std::filesystem::path& run_dir);

}  // namespace anchorctx::train
