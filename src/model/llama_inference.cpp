// Float32 token-by-token forward of a Llama-family model with a KV cache (see
// llama_inference.h). Read top to bottom: the layers as plain functions, then step().
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <cblas.h>

#include "anchorctx/core/error.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::model {
namespace {

int to_int(std::int64_t v) {
  return static_cast<int>(v);
}

// out [rows] = w [rows, cols] @ x [cols] (+ bias [rows] when non-empty)
void linear(float* out, const std::vector<float>& w, const std::vector<float>& bias, const float* x,
            std::int64_t rows, std::int64_t cols) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, to_int(rows), to_int(cols), 1.0f, w.data(), to_int(cols),
              x, 1, 0.0f, out, 1);
  if (!bias.empty())
    for (std::int64_t i = 0; i < rows; ++i)
      out[i] += bias[static_cast<std::size_t>(i)];
}

// out [n] = x [n] / sqrt(mean(x^2) + eps) * weight [n]
// As transformers' LlamaRMSNorm in float32: normalize first, then scale by the weight.
void rmsnorm(float* out, const float* x, const std::vector<float>& weight, std::int64_t n,
             double eps) {
  float sum_sq = 0.0f;
  for (std::int64_t i = 0; i < n; ++i)
    sum_sq += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + static_cast<float>(eps));
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = weight[static_cast<std::size_t>(i)] * (x[i] * inv_rms);
}

// The frequency table of transformers' rope utilities for `seq_len` tokens (only `dynamic`
// scaling depends on it).
rope::RopeFrequencies frequencies(const LlamaConfig& config, std::int64_t seq_len) {
  return rope::compute_frequencies({config.resolved_head_dim(), config.rope_theta,
                                    config.rope_scaling, config.max_position_embeddings},
                                   seq_len);
}

// x [n] = softmax(x [n]) in float32, max-subtracted.
void softmax(float* x, std::int64_t n) {
  const float max = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  for (std::int64_t i = 0; i < n; ++i)
    x[i] /= sum;
}

// out [n_heads, head_dim] = per head h: softmax(q_h . K_g^T / sqrt(head_dim)) @ V_g over the
// `length` cached positions, g = h / (n_heads / n_kv_heads) (GQA).
// q [n_heads, head_dim]; keys, values [length, n_kv_heads * head_dim]; scores [length] scratch.
void attention(float* out, const float* q, const float* keys, const float* values, float* scores,
               std::int64_t length, std::int64_t n_heads, std::int64_t n_kv_heads,
               std::int64_t head_dim) {
  const std::int64_t kv_dim = n_kv_heads * head_dim;
  const std::int64_t group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (std::int64_t h = 0; h < n_heads; ++h) {
    const std::int64_t g = h / group;
    // scores [length] = K_g [length, head_dim] @ q_h [head_dim] * scale
    cblas_sgemv(CblasRowMajor, CblasNoTrans, to_int(length), to_int(head_dim), scale,
                keys + g * head_dim, to_int(kv_dim), q + h * head_dim, 1, 0.0f, scores, 1);
    softmax(scores, length);
    // out_h [head_dim] = V_g^T [head_dim, length] @ scores [length]
    cblas_sgemv(CblasRowMajor, CblasTrans, to_int(length), to_int(head_dim), 1.0f,
                values + g * head_dim, to_int(kv_dim), scores, 1, 0.0f, out + h * head_dim, 1);
  }
}

// gate [n] = silu(gate [n]) * up [n], silu(x) = x / (1 + e^-x)
void swiglu(float* gate, const float* up, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

LlamaInference::LlamaInference(LlamaModel model, std::int64_t reserve_tokens)
    : model_(std::move(model)) {
  const LlamaConfig& c = model_.config;
  frequencies_ = frequencies(c, 0);
  const auto n = [](std::int64_t v) { return static_cast<std::size_t>(v); };
  key_cache_.resize(n(c.num_hidden_layers));
  value_cache_.resize(n(c.num_hidden_layers));
  for (std::size_t l = 0; l < key_cache_.size(); ++l) {
    key_cache_[l].reserve(n(std::max<std::int64_t>(reserve_tokens, 0) * c.kv_dim()));
    value_cache_[l].reserve(n(std::max<std::int64_t>(reserve_tokens, 0) * c.kv_dim()));
  }
  x_.resize(n(c.hidden_size));
  xb_.resize(n(c.hidden_size));
  q_.resize(n(c.q_dim()));
  k_.resize(n(c.kv_dim()));
  v_.resize(n(c.kv_dim()));
  att_out_.resize(n(c.q_dim()));
  gate_.resize(n(c.intermediate_size));
  up_.resize(n(c.intermediate_size));
  logits_.resize(n(c.vocab_size));
}

void LlamaInference::reset() {
  position_ = 0;
  frequencies_ = frequencies(model_.config, 0);  // back from a grown dynamic base
  for (auto& cache : key_cache_)
    cache.clear();
  for (auto& cache : value_cache_)
    cache.clear();
}

void LlamaInference::adopt_cache(std::vector<std::vector<float>> keys,
                                 std::vector<std::vector<float>> values, std::int64_t tokens) {
  const LlamaConfig& c = model_.config;
  const std::size_t layers = static_cast<std::size_t>(c.num_hidden_layers);
  const std::size_t size = static_cast<std::size_t>(tokens * c.kv_dim());
  require(tokens >= 0 && keys.size() == layers && values.size() == layers,
          "adopt_cache: {} key and {} value layers for a {}-layer model", keys.size(),
          values.size(), layers);
  for (std::size_t l = 0; l < layers; ++l)
    require(keys[l].size() == size && values[l].size() == size,
            "adopt_cache: layer {} holds {} keys and {} values, expected {} x {}", l,
            keys[l].size(), values[l].size(), tokens, c.kv_dim());
  key_cache_ = std::move(keys);
  value_cache_ = std::move(values);
  position_ = tokens;
  // Dynamic scaling: the base the prefill used for its length (transformers' batched forward).
  frequencies_ = frequencies(
      c, c.rope_scaling.type == RopeScalingType::dynamic && tokens > c.max_position_embeddings
             ? tokens
             : 0);
}

// logits [vocab] of the token after `token`, fed at position_.
std::span<const float> LlamaInference::step(std::int32_t token) {
  const LlamaConfig& c = model_.config;
  const LlamaWeights& w = model_.weights;
  require(token >= 0 && token < c.vocab_size,
          "generate: token id {} is outside the vocabulary [0, {})", token, c.vocab_size);
  require(!c.sliding_window || position_ < *c.sliding_window,
          "generate: position {} reaches the model's sliding window ({}), which inference does "
          "not implement",
          position_, c.sliding_window.value_or(0));

  const std::int64_t dim = c.hidden_size, inter = c.intermediate_size;
  const std::int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), head_dim = c.resolved_head_dim();
  const std::int64_t length = position_ + 1;  // positions the new token attends to, itself included
  scores_.resize(static_cast<std::size_t>(length));

  // Dynamic NTK scaling grows the RoPE base once the sequence passes max_position_embeddings:
  // recomputed for every longer sequence, as transformers' dynamic_rope_update does (keys already
  // cached keep the rotation they were stored with, as in transformers' KV cache).
  if (c.rope_scaling.type == RopeScalingType::dynamic && length > c.max_position_embeddings)
    frequencies_ = frequencies(c, length);
  // cos/sin of this position, shared by q and k of every layer (float32, HF's fp32 RoPE).
  const std::int32_t position = static_cast<std::int32_t>(position_);
  const rope::RotationTable rotation(frequencies_, {&position, 1}, rope::RopeMode::fp32);

  // x [dim] = embedding row of the token
  std::copy_n(w.embed_tokens.begin() + static_cast<std::ptrdiff_t>(token * dim), dim, x_.begin());

  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const LlamaLayerWeights& layer = w.layers[l];
    // Attention block: x += o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x).
    rmsnorm(xb_.data(), x_.data(), layer.input_norm, dim, c.rms_norm_eps);
    linear(q_.data(), layer.q_proj, layer.q_bias, xb_.data(), q_dim, dim);
    linear(k_.data(), layer.k_proj, layer.k_bias, xb_.data(), kv_dim, dim);
    linear(v_.data(), layer.v_proj, layer.v_bias, xb_.data(), kv_dim, dim);
    rotation.forward(q_.data(), c.num_attention_heads);  // q [1, n_heads, head_dim]
    rotation.forward(k_.data(), c.num_key_value_heads);
    key_cache_[l].insert(key_cache_[l].end(), k_.begin(), k_.end());
    value_cache_[l].insert(value_cache_[l].end(), v_.begin(), v_.end());
    attention(att_out_.data(), q_.data(), key_cache_[l].data(), value_cache_[l].data(),
              scores_.data(), length, c.num_attention_heads, c.num_key_value_heads, head_dim);
    linear(xb_.data(), layer.o_proj, layer.o_bias, att_out_.data(), dim, q_dim);
    for (std::int64_t i = 0; i < dim; ++i)
      x_[static_cast<std::size_t>(i)] += xb_[static_cast<std::size_t>(i)];

    // MLP block: x += down(silu(gate(h)) * up(h)), h = rmsnorm(x).
    rmsnorm(xb_.data(), x_.data(), layer.post_attention_norm, dim, c.rms_norm_eps);
    linear(gate_.data(), layer.gate_proj, layer.gate_bias, xb_.data(), inter, dim);
    linear(up_.data(), layer.up_proj, layer.up_bias, xb_.data(), inter, dim);
    swiglu(gate_.data(), up_.data(), inter);
    linear(xb_.data(), layer.down_proj, layer.down_bias, gate_.data(), dim, inter);
    for (std::int64_t i = 0; i < dim; ++i)
      x_[static_cast<std::size_t>(i)] += xb_[static_cast<std::size_t>(i)];
  }

  // logits [vocab] = lm_head [vocab, dim] @ rmsnorm(x)
  rmsnorm(xb_.data(), x_.data(), w.final_norm, dim, c.rms_norm_eps);
  linear(logits_.data(), w.output_matrix(), {}, xb_.data(), c.vocab_size, dim);
  ++position_;
  return logits_;
}

}  // namespace anchorctx::model
