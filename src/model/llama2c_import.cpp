// Reading llama2.c's legacy checkpoint into HuggingFace Llama tensors (see llama2c.h).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/core/mapped_file.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/tensor_schema.h"
#include "model/weight_checks.h"

namespace anchorctx::model {
namespace {

constexpr std::size_t kHeaderBytes = 7 * sizeof(std::int32_t);
// llama2.c's later export versions (export.py --version 1, 2) begin with this uint32 magic
// ("ak42"); the legacy format has no magic, so a file starting with it is named for what it is.
constexpr std::uint32_t kVersionedMagic = 0x616b3432;
// Bounds that keep every size product below 2^63 while admitting any real model.
constexpr std::int64_t kMaxDim = std::int64_t{1} << 20;
constexpr std::int64_t kMaxLayers = 4096;
constexpr std::int64_t kMaxVocab = std::int64_t{1} << 24;
constexpr std::int64_t kMaxSeqLen = std::int64_t{1} << 24;
// llama2.c's run.c hard-codes its special token ids; its checkpoints do not record them.
constexpr std::int64_t kLlama2cBos = 1;
constexpr std::int64_t kLlama2cEos = 2;

std::int32_t read_i32(const std::byte* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Llama2cHeader parse_header(const core::MappedFile& file) {
  const std::string& path = file.path();
  require(file.size() >= kHeaderBytes,
          "llama2.c checkpoint '{}': {} bytes, shorter than the 28-byte header", path, file.size());
  std::uint32_t magic;
  std::memcpy(&magic, file.data(), sizeof magic);
  require(magic != kVersionedMagic,
          "llama2.c checkpoint '{}': a versioned export (magic 'ak42'); only the legacy "
          "format (export.py --version 0) is read",
          path);

  const std::byte* p = file.data();
  Llama2cHeader h;
  h.dim = read_i32(p + 0);
  h.hidden_dim = read_i32(p + 4);
  h.n_layers = read_i32(p + 8);
  h.n_heads = read_i32(p + 12);
  h.n_kv_heads = read_i32(p + 16);
  const std::int32_t signed_vocab = read_i32(p + 20);
  h.seq_len = read_i32(p + 24);

  const auto check = [&](const char* name, std::int64_t value, std::int64_t max) {
    require(value >= 1 && value <= max,
            "llama2.c checkpoint '{}': header {} = {} is out of range [1, {}]", path, name, value,
            max);
  };
  check("dim", h.dim, kMaxDim);
  check("hidden_dim", h.hidden_dim, kMaxDim);
  check("n_layers", h.n_layers, kMaxLayers);
  check("n_heads", h.n_heads, h.dim);
  check("n_kv_heads", h.n_kv_heads, h.n_heads);
  // Negated, it marks an unshared classifier; INT32_MIN has no positive counterpart.
  require(signed_vocab != 0 && signed_vocab != INT32_MIN,
          "llama2.c checkpoint '{}': header vocab_size = {} is invalid", path, signed_vocab);
  h.shared_classifier = signed_vocab > 0;
  h.vocab_size = signed_vocab > 0 ? signed_vocab : -signed_vocab;
  check("vocab_size (absolute value)", h.vocab_size, kMaxVocab);
  check("seq_len", h.seq_len, kMaxSeqLen);
  require(h.dim % h.n_heads == 0,
          "llama2.c checkpoint '{}': dim {} is not a multiple of n_heads {}", path, h.dim,
          h.n_heads);
  require(h.head_dim() % 2 == 0, "llama2.c checkpoint '{}': head_dim {} is odd (RoPE needs pairs)",
          path, h.head_dim());
  require(h.n_heads % h.n_kv_heads == 0,
          "llama2.c checkpoint '{}': n_heads {} is not a multiple of n_kv_heads {}", path,
          h.n_heads, h.n_kv_heads);
  return h;
}

// Walks the float32 tensors of the file in order. The total size was checked against the header
// up front, so every read below stays inside the file.
class TensorCursor {
 public:
  explicit TensorCursor(const core::MappedFile& file) : file_(file), offset_(kHeaderBytes) {}

  // The next `count` floats.
  std::vector<float> take(std::int64_t count) {
    std::vector<float> values = read_at(offset_, count);
    offset_ += bytes(count);
    return values;
  }

  // A stacked tensor [layers, per_layer] read one layer at a time (no copy of the whole stack).
  class Stack {
   public:
    Stack(const TensorCursor& cursor, std::size_t offset, std::int64_t per_layer)
        : cursor_(cursor), offset_(offset), per_layer_(per_layer) {}
    std::vector<float> layer(std::int32_t l) const {
      return cursor_.read_at(offset_ + static_cast<std::size_t>(l) * bytes(per_layer_), per_layer_);
    }

   private:
    const TensorCursor& cursor_;
    std::size_t offset_;
    std::int64_t per_layer_;
  };
  Stack stack(std::int32_t layers, std::int64_t per_layer) {
    Stack s(*this, offset_, per_layer);
    offset_ += static_cast<std::size_t>(layers) * bytes(per_layer);
    return s;
  }

  void skip(std::int64_t count) { offset_ += bytes(count); }

 private:
  static std::size_t bytes(std::int64_t count) {
    return static_cast<std::size_t>(count) * sizeof(float);
  }
  std::vector<float> read_at(std::size_t offset, std::int64_t count) const {
    require(offset + bytes(count) <= file_.size(),
            "llama2.c checkpoint '{}': internal error: read past the end", file_.path());
    std::vector<float> values(static_cast<std::size_t>(count));
    std::memcpy(values.data(), file_.data() + offset, bytes(count));
    return values;
  }

  const core::MappedFile& file_;
  std::size_t offset_;
};

}  // namespace

LlamaConfig llama2c_config(const Llama2cHeader& h) {
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

namespace {

// The header of a mapped checkpoint, with the file's size checked against what it implies.
Llama2cHeader parse_checked_header(const core::MappedFile& file) {
  const Llama2cHeader h = parse_header(file);
  const std::int64_t dim = h.dim, hidden = h.hidden_dim, layers = h.n_layers;
  const std::int64_t vocab = h.vocab_size, kv_dim = h.kv_dim();
  const std::int64_t rope_table = std::int64_t{h.seq_len} * (h.head_dim() / 2);
  const std::int64_t floats = vocab * dim                  // token embedding
                              + layers * dim               // attention RMSNorm
                              + layers * dim * dim * 2     // wq, wo
                              + layers * kv_dim * dim * 2  // wk, wv
                              + layers * dim               // FFN RMSNorm
                              + layers * hidden * dim * 3  // w1, w2, w3
                              + dim                        // final RMSNorm
                              + rope_table * 2             // cos, sin (skipped)
                              + (h.shared_classifier ? 0 : vocab * dim);
  const std::uint64_t expected = kHeaderBytes + static_cast<std::uint64_t>(floats) * sizeof(float);
  require(file.size() == expected,
          "llama2.c checkpoint '{}': {} bytes, but its header (dim {}, hidden_dim {}, n_layers {}, "
          "n_heads {}, n_kv_heads {}, vocab_size {}{}, seq_len {}) implies {} bytes{}",
          file.path(), file.size(), h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
          h.vocab_size, h.shared_classifier ? "" : " unshared", h.seq_len, expected,
          file.size() < expected ? " (truncated?)" : " (not a legacy llama2.c export?)");
  return h;
}

}  // namespace

Llama2cHeader read_llama2c_header(const std::filesystem::path& path) {
  return parse_checked_header(core::MappedFile::open(path.string()));
}

Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path) {
  const core::MappedFile file = core::MappedFile::open(path.string());
  const Llama2cHeader h = parse_checked_header(file);
  const std::int64_t dim = h.dim, hidden = h.hidden_dim, vocab = h.vocab_size, kv_dim = h.kv_dim();
  const std::int64_t rope_table = std::int64_t{h.seq_len} * (h.head_dim() / 2);

  TensorCursor cursor(file);
  std::vector<float> embedding = cursor.take(vocab * dim);
  const auto attn_norm = cursor.stack(h.n_layers, dim);
  const auto wq = cursor.stack(h.n_layers, dim * dim);
  const auto wk = cursor.stack(h.n_layers, kv_dim * dim);
  const auto wv = cursor.stack(h.n_layers, kv_dim * dim);
  const auto wo = cursor.stack(h.n_layers, dim * dim);
  const auto ffn_norm = cursor.stack(h.n_layers, dim);
  const auto w1 = cursor.stack(h.n_layers, hidden * dim);
  const auto w2 = cursor.stack(h.n_layers, dim * hidden);
  const auto w3 = cursor.stack(h.n_layers, hidden * dim);
  std::vector<float> final_norm = cursor.take(dim);
  cursor.skip(rope_table * 2);  // recomputed from rope_theta by every reader

  // The weights by slot; their names and shapes are the schema's for the model the header
  // describes.
  LlamaWeights w;
  w.layers.resize(static_cast<std::size_t>(h.n_layers));
  w.embed_tokens = std::move(embedding);
  for (std::int32_t l = 0; l < h.n_layers; ++l) {
    LlamaLayerWeights& t = w.layers[static_cast<std::size_t>(l)];
    t.input_norm = attn_norm.layer(l);
    t.q_proj = wq.layer(l);
    t.k_proj = wk.layer(l);
    permute_rotary_rows(t.q_proj, h.n_heads, h.head_dim(), dim);
    permute_rotary_rows(t.k_proj, h.n_kv_heads, h.head_dim(), dim);
    t.v_proj = wv.layer(l);
    t.o_proj = wo.layer(l);
    t.post_attention_norm = ffn_norm.layer(l);
    t.gate_proj = w1.layer(l);
    t.up_proj = w3.layer(l);
    t.down_proj = w2.layer(l);
  }
  w.final_norm = std::move(final_norm);
  if (!h.shared_classifier) w.lm_head = cursor.take(vocab * dim);

  Llama2cCheckpoint out;
  out.header = h;
  for_each_tensor(
      [&](const TensorSpec& spec, std::vector<float>& values) {
        if (!spec.present) return;
        // Refused here, as every loader refuses it: imported, a NaN or an infinity would give
        // a folder that generate, eval and training then reject.
        require_finite(values, spec.name, path.string());
        out.tensors.push_back({spec.name, spec.shape, std::move(values)});
      },
      tensor_schema(llama2c_config(h)), w);
  return out;
}

}  // namespace anchorctx::model
