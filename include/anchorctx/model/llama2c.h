// llama2.c's legacy checkpoint format (Karpathy's `run.c`, "version 0" export): reading it into
// HuggingFace Llama tensors, importing it as a HuggingFace-style model folder, and exporting a
// model back to it (export_llama2c, below).
//
// The file: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
// negative vocab_size means the classifier is stored separately, not tied to the embedding),
// then float32 tensors in this order: token embedding [vocab, dim], attention RMSNorm weights
// [layers, dim], wq [layers, dim, dim], wk and wv [layers, kv_dim, dim], wo [layers, dim, dim],
// FFN RMSNorm weights [layers, dim], w1 [layers, hidden, dim], w2 [layers, dim, hidden], w3
// [layers, hidden, dim], the final RMSNorm weight [dim], RoPE cos and sin tables [seq_len,
// head_dim / 2] each (recomputed by readers, so skipped here), and the classifier [vocab, dim]
// when not tied.
//
// llama2.c rotates adjacent pairs (x[2i], x[2i+1]) with RoPE; HuggingFace Llama rotates halves
// (x[i], x[i + d/2]). The import therefore reorders the rows of wq and wk within each head
// (permute_rotary_rows) so that the HuggingFace model computes the same function.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_weights.h"

namespace anchorctx::model {

// What llama2.c's run.c hard-codes (rmsnorm: `ss += 1e-5f`; RoPE: `powf(10000.0f, ...)`); its
// checkpoints do not record them.
inline constexpr double kLlama2cRopeTheta = 10000.0;
inline constexpr double kLlama2cRmsNormEps = 1e-5;

// The seven header integers, validated (vocab_size is the absolute value).
struct Llama2cHeader {
  std::int32_t dim = 0;
  std::int32_t hidden_dim = 0;
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;
  std::int32_t n_kv_heads = 0;
  std::int32_t vocab_size = 0;
  std::int32_t seq_len = 0;
  bool shared_classifier = true;  // the header's vocab_size was positive

  std::int32_t head_dim() const { return dim / n_heads; }
  std::int32_t kv_dim() const { return n_kv_heads * head_dim(); }
};

// One float32 tensor under its HuggingFace name, row-major.
struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

// A llama2.c checkpoint in HuggingFace terms: tensors named as transformers' LlamaForCausalLM
// names them, wq and wk already permuted. `lm_head.weight` is present only when the checkpoint
// has its own classifier (tied otherwise: tie_word_embeddings).
struct Llama2cCheckpoint {
  Llama2cHeader header;
  std::vector<NamedTensor> tensors;
};

// The HuggingFace config of the model a llama2.c header describes: Llama, rope_theta and
// rms_norm_eps as run.c hard-codes them, bos 1 and eos 2, the LM head tied when the header's
// classifier is shared, float32.
LlamaConfig llama2c_config(const Llama2cHeader& header);

// Reads and validates a legacy llama2.c checkpoint. Throws anchorctx::Error naming the file when
// it cannot be read, a header value is out of range, or its size is not exactly what the header
// implies (a truncated file, or another export version).
Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path);

// The header alone, with the same checks (the file's size included); nothing else is read.
Llama2cHeader read_llama2c_header(const std::filesystem::path& path);

// Reorders the rows of one projection `w` [n_heads * head_dim, cols] from llama2.c's
// adjacent-pair RoPE layout to HuggingFace's rotate-half layout: within each head, row 2i goes to
// row i and row 2i + 1 to row i + head_dim / 2. Throws anchorctx::Error on a size mismatch or an
// odd head_dim.
void permute_rotary_rows(std::span<float> w, std::int32_t n_heads, std::int32_t head_dim,
                         std::int64_t cols);

// The tokenizer file that goes beside an imported checkpoint, as the caller loaded it
// (data::load_tokenizer: the model part reads no tokenizers, it sits below data).
struct Llama2cTokenizerFile {
  std::filesystem::path path;
  std::string kind;             // data::Tokenizer::kind(); must be "llama2c"
  std::int64_t vocab_size = 0;  // must equal the checkpoint's
};

// What `anchorctx convert llama2c` does: reads `checkpoint`, writes `out_dir` with config.json,
// model.safetensors (F32) and the tokenizer file copied in as tokenizer.bin. The folder is
// written under a temporary name and renamed; `out_dir` must not exist unless `replace`. The
// tokenizer must be a llama2.c one with the checkpoint's vocabulary size (checked before
// anything is written). Returns the config written.
LlamaConfig import_llama2c(const std::filesystem::path& checkpoint,
                           const Llama2cTokenizerFile& tokenizer,
                           const std::filesystem::path& out_dir, bool replace = false);

// ---- export: the inverse of the import ----

// The inverse of permute_rotary_rows: within each head, row i goes back to row 2i and row
// i + head_dim / 2 to row 2i + 1 (HuggingFace's rotate-half layout to llama2.c's adjacent
// pairs). Throws anchorctx::Error on a size mismatch or an odd head_dim.
void unpermute_rotary_rows(std::span<float> w, std::int32_t n_heads, std::int32_t head_dim,
                           std::int64_t cols);

// The header a model gets in llama2.c's format, or anchorctx::Error naming `source` and every
// setting run.c cannot reproduce: biases (attention_bias, mlp_bias, Qwen2's q/k/v biases), a
// rope_scaling, rope_theta != 10000 and rms_norm_eps != 1e-5 (run.c hard-codes both), a head_dim
// other than hidden_size / num_attention_heads (run.c derives it), a sliding_window (run.c
// attends to the whole context), sizes beyond the int32 header. seq_len is
// max_position_embeddings; a negative vocab_size marks an untied lm_head.
Llama2cHeader llama2c_header_for(const LlamaConfig& config, std::string_view source = "model");

// Writes `model` as a legacy (version 0) llama2.c checkpoint, the format read above, with the
// rows of wq and wk moved back to adjacent-pair order. The RoPE tables run.c skips are written
// as llama2.c's export.py writes them (float32: freq_i = 1 / 10000^(2i / head_dim), angle =
// pos * freq_i rounded to float, then cos and sin); torch's float32 cos/sin may differ from
// these in the last bit. Lossless: refuses (see llama2c_header_for) a model run.c would compute
// differently, and checks every tensor's size. The file is written under a temporary name and
// renamed; `out` must not exist unless `replace`, and its folder must exist. Returns the header.
Llama2cHeader export_llama2c(const LlamaModel& model, const std::filesystem::path& out,
                             bool replace = false);

// What `anchorctx convert to-llama2c` does: the model folder `model_dir` (config.json checked
// before any weight is read, then the weights in any dtype, widened to float32 exactly) to `out`.
Llama2cHeader export_llama2c(const std::filesystem::path& model_dir,
                             const std::filesystem::path& out, bool replace = false);

}  // namespace anchorctx::model
