// transformers' rule for a tied config whose weights also hold an LM head (see llama_weights.h).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"

namespace anchorctx::model {
namespace {

constexpr const char* kEmbedding = "model.embed_tokens.weight";
constexpr const char* kHead = "lm_head.weight";

// Equal as values: byte for byte when stored alike, else through float32 (exact for every dtype).
bool same_values(const SafetensorsReader& reader, const TensorInfo& a, const TensorInfo& b) {
  if (a.shape != b.shape) return false;
  if (a.dtype == b.dtype) {
    const auto x = reader.view(a.name).bytes, y = reader.view(b.name).bytes;
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
  }
  return reader.read_f32(a.name) == reader.read_f32(b.name);
}

}  // namespace

LlamaConfig reconcile_tied_head(LlamaConfig config, const SafetensorsReader& reader) {
  if (!config.tie_word_embeddings) return config;
  const TensorInfo* head = reader.find(kHead);
  const TensorInfo* embedding = reader.find(kEmbedding);
  if (head == nullptr || embedding == nullptr || same_values(reader, *head, *embedding))
    return config;
  config.tie_word_embeddings = false;
  std::fprintf(stderr, "%s",
               fmt::format("{}: holds an {} that differs from {} while the config ties the two "
                           "(tie_word_embeddings): using it, untied, as transformers does\n",
                           reader.files().at(head->file).string(), kHead, kEmbedding)
                   .c_str());
  return config;
}

LlamaConfig load_model_config(const std::filesystem::path& dir) {
  const LlamaConfig config = load_config(dir);
  // A folder of a config alone (a model to initialise at random) has nothing to reconcile.
  const bool has_weights = std::filesystem::exists(dir / "model.safetensors") ||
                           std::filesystem::exists(dir / "model.safetensors.index.json");
  if (!config.tie_word_embeddings || !has_weights) return config;
  return reconcile_tied_head(config, SafetensorsReader::open(dir));
}

}  // namespace anchorctx::model
