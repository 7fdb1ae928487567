// `anchorctx convert llama2c`: a llama2.c checkpoint and tokenizer into a HuggingFace-style model
// folder (config.json, model.safetensors, tokenizer.bin), written all at once or not at all.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/safetensors.h"

namespace anchorctx::model {
namespace {

// llama2.c's run.c hard-codes these; its checkpoints do not record them.
constexpr double kLlama2cRmsNormEps = 1e-5;
constexpr double kLlama2cRopeTheta = 10000.0;
constexpr std::int64_t kLlama2cBos = 1;
constexpr std::int64_t kLlama2cEos = 2;

LlamaConfig config_for(const Llama2cHeader& h) {
  LlamaConfig c;
  c.model_type = ModelType::llama;
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_hidden_layers = h.n_layers;
  c.num_attention_heads = h.n_heads;
  c.num_key_value_heads = h.n_kv_heads;
  c.head_dim = h.head_dim();
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = kLlama2cRmsNormEps;
  c.rope_theta = kLlama2cRopeTheta;
  // transformers ties lm_head to the embedding when asked and then needs no lm_head.weight.
  c.tie_word_embeddings = h.shared_classifier;
  c.bos_token_id = kLlama2cBos;
  c.eos_token_ids = {kLlama2cEos};
  c.torch_dtype = "float32";
  return c;
}

}  // namespace

LlamaConfig import_llama2c(const std::filesystem::path& checkpoint,
                           const std::filesystem::path& tokenizer,
                           const std::filesystem::path& out_dir, bool replace) {
  const Llama2cCheckpoint model = read_llama2c_checkpoint(checkpoint);
  // Check the pair before writing anything: a tokenizer of another model would load and then
  // produce garbage (or ids past the embedding) at generation time.
  const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(tokenizer.string());
  require(tok->kind() == "llama2c",
          "tokenizer '{}': a {} tokenizer; a llama2.c model needs its tokenizer.bin (tok*.bin)",
          tokenizer.string(), tok->kind());
  require(tok->vocab_size() == model.header.vocab_size,
          "tokenizer '{}' has {} tokens but checkpoint '{}' has vocab_size {}", tokenizer.string(),
          tok->vocab_size(), checkpoint.string(), model.header.vocab_size);

  const LlamaConfig config = config_for(model.header);
  std::error_code ec;
  if (replace && std::filesystem::exists(std::filesystem::symlink_status(out_dir, ec))) {
    // --force replaces only a folder this import wrote (its three files), holding no input.
    const core::OwnedFolderRule rule{
        "model folder", {"config.json", "model.safetensors"}, {"tokenizer.bin"}, {}, {}};
    const std::filesystem::path inputs[] = {checkpoint, tokenizer};
    core::check_replaceable_folder(out_dir, rule, inputs);
  }
  core::AtomicDir dir(out_dir, replace);
  save_config(config, dir.path() / "config.json");
  std::vector<TensorData> tensors;
  tensors.reserve(model.tensors.size());
  for (const NamedTensor& t : model.tensors)
    tensors.push_back(tensor_from_f32(t.name, t.shape, t.data, TensorDtype::f32));
  write_model_safetensors(dir.path(), tensors);
  std::filesystem::copy_file(tokenizer, dir.path() / "tokenizer.bin");
  dir.commit();
  return config;
}

}  // namespace anchorctx::model
