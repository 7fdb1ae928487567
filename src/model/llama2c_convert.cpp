// `anchorctx convert llama2c`: a llama2.c checkpoint and tokenizer into a HuggingFace-style model
// folder (config.json, model.safetensors, tokenizer.bin), written all at once or not at all.
#include <filesystem>
#include <string>
#include <vector>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/safetensors.h"

namespace anchorctx::model {

LlamaConfig import_llama2c(const std::filesystem::path& checkpoint,
                           const Llama2cTokenizerFile& tokenizer,
                           const std::filesystem::path& out_dir, bool replace) {
  const Llama2cCheckpoint model = read_llama2c_checkpoint(checkpoint);
  // Check the pair before writing anything: a tokenizer of another model would load and then
  // produce garbage (or ids past the embedding) at generation time.
  require(tokenizer.kind == "llama2c",
          "tokenizer '{}': a {} tokenizer; a llama2.c model needs its tokenizer.bin (tok*.bin)",
          tokenizer.path.string(), tokenizer.kind);
  require(tokenizer.vocab_size == model.header.vocab_size,
          "tokenizer '{}' has {} tokens but checkpoint '{}' has vocab_size {}",
          tokenizer.path.string(), tokenizer.vocab_size, checkpoint.string(),
          model.header.vocab_size);

  const LlamaConfig config = llama2c_config(model.header);
  std::error_code ec;
  if (replace && std::filesystem::exists(std::filesystem::symlink_status(out_dir, ec))) {
    // --force replaces only a folder this import wrote (its three files), holding no input.
    const core::OwnedFolderRule rule{
        "model folder", {"config.json", "model.safetensors"}, {"tokenizer.bin"}, {}, {}};
    const std::filesystem::path inputs[] = {checkpoint, tokenizer.path};
    core::check_replaceable_folder(out_dir, rule, inputs);
  }
  core::AtomicDir dir(out_dir, replace);
  save_config(config, dir.path() / "config.json");
  std::vector<TensorData> tensors;
  tensors.reserve(model.tensors.size());
  for (const NamedTensor& t : model.tensors)
    tensors.push_back(tensor_from_f32(t.name, t.shape, t.data, TensorDtype::f32));
  write_model_safetensors(dir.path(), tensors);
  core::copy_file_atomic(tokenizer.path, dir.path() / "tokenizer.bin");
  dir.commit();
  return config;
}

}  // namespace anchorctx::model
