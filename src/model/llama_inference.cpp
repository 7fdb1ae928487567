// Float32 token-by-token forward of a Llama-family model with a KV cache (see
// llama_inference.h). Read top to bottom: the layers as plain functions, the sequences' state,
// then step(). The products run on decode_kernels.h (one fixed summation order per element).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/rope/rope.h"
#include "model/layers/decode_kernels.h"
#include "model/layers/vector_math.h"

namespace anchorctx::model {
namespace {

std::size_t to_size(std::int64_t v) {
  return static_cast<std::size_t>(v);
}

// out [batch, rows] = x [batch, cols] @ w [rows, cols]^T (+ bias [rows] when non-empty), reading
// w's bf16 bits when it has them (the same values: the same result from half the reads).
void linear(float* out, const std::vector<float>& w, const std::vector<std::uint16_t>& w_bits,
            const std::vector<float>& bias, const float* x, std::int64_t batch, std::int64_t rows,
            std::int64_t cols) {
  const float* b = bias.empty() ? nullptr : bias.data();
  if (!w_bits.empty())
    detail::batched_matvec(w_bits.data(), cols, b, rows, cols, x, cols, batch, out, rows);
  else
    detail::batched_matvec(w.data(), cols, b, rows, cols, x, cols, batch, out, rows);
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
    out[i] = weight[to_size(i)] * (x[i] * inv_rms);
}

// rmsnorm of each of `rows` rows of width n.
void rmsnorm_rows(float* out, const float* x, const std::vector<float>& weight, std::int64_t rows,
                  std::int64_t n, double eps) {
  for (std::int64_t r = 0; r < rows; ++r)
    rmsnorm(out + r * n, x + r * n, weight, n, eps);
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
  const float max = detail::max_of(x, n);
  const float sum = static_cast<float>(detail::exp_shifted_sum(x, n, max, x));
  for (std::int64_t i = 0; i < n; ++i)
    x[i] /= sum;
}

}  // namespace

LlamaInference::LlamaInference(LlamaModel model, std::int64_t reserve_tokens)
    : model_(std::move(model)) {
  reset();
  // A model of bf16 values (a bf16 checkpoint widened on loading, eval in bf16 precision):
  // decode reads its matrices as bits, half the bytes of the float32 arrays.
  if (holds_bf16_values(model_.weights)) {
    const auto bits_of = [](const std::vector<float>& w) {
      std::vector<std::uint16_t> bits(w.size());
      to_bf16_bits(w, bits);
      return bits;
    };
    for (const LlamaLayerWeights& l : model_.weights.layers)
      for_each_matrix(
          l, layer_bits_.emplace_back(),
          [&](const std::vector<float>& w, std::vector<std::uint16_t>& b) { b = bits_of(w); });
    output_bits_ = bits_of(model_.weights.output_matrix());
  }
  const std::size_t reserve =
      to_size(std::max<std::int64_t>(reserve_tokens, 0) * config().resolved_head_dim());
  for (std::size_t l = 0; l < sequences_[0].keys.size(); ++l) {
    sequences_[0].keys[l].reserve(reserve);
    sequences_[0].values[l].reserve(reserve);
  }
}

void LlamaInference::check_cache(KvCache& cache) const {
  const LlamaConfig& c = config();
  const std::size_t layers = to_size(c.num_hidden_layers);
  const std::size_t size = to_size(cache.tokens * c.kv_dim());
  if (cache.tokens == 0 && cache.keys.empty() && cache.values.empty()) {
    cache.keys.resize(layers);
    cache.values.resize(layers);
  }
  require(cache.tokens >= 0 && cache.keys.size() == layers && cache.values.size() == layers,
          "adopt_caches: {} key and {} value layers for a {}-layer model", cache.keys.size(),
          cache.values.size(), layers);
  for (std::size_t l = 0; l < layers; ++l)
    require(cache.keys[l].size() == size && cache.values[l].size() == size,
            "adopt_caches: layer {} holds {} keys and {} values, expected {} x {}", l,
            cache.keys[l].size(), cache.values[l].size(), cache.tokens, c.kv_dim());
}

// A sequence started from a checked cache (freed here), room reserved for `room` more tokens.
LlamaInference::Sequence LlamaInference::new_sequence(KvCache cache, std::int64_t room) const {
  const LlamaConfig& c = config();
  const std::size_t layers = to_size(c.num_hidden_layers);
  // Each KV head's rows apart: attention then streams one contiguous array per head.
  const std::int64_t n_kv = c.num_key_value_heads, head_dim = c.resolved_head_dim();
  Sequence s;
  s.keys.resize(layers * to_size(n_kv));
  s.values.resize(layers * to_size(n_kv));
  for (std::size_t l = 0; l < layers; ++l)
    for (std::int64_t g = 0; g < n_kv; ++g) {
      std::vector<float>& k = s.keys[l * to_size(n_kv) + to_size(g)];
      std::vector<float>& v = s.values[l * to_size(n_kv) + to_size(g)];
      k.reserve(to_size((cache.tokens + room) * head_dim));
      v.reserve(to_size((cache.tokens + room) * head_dim));
      k.resize(to_size(cache.tokens * head_dim));
      v.resize(to_size(cache.tokens * head_dim));
      for (std::int64_t t = 0; t < cache.tokens; ++t) {
        const std::size_t from = to_size(t * c.kv_dim() + g * head_dim);
        std::copy_n(cache.keys[l].begin() + from, head_dim, k.begin() + t * head_dim);
        std::copy_n(cache.values[l].begin() + from, head_dim, v.begin() + t * head_dim);
      }
    }
  s.position = cache.tokens;
  // Dynamic scaling: the base the prefill used for its length (transformers' batched forward).
  s.frequencies = frequencies(
      c, c.rope_scaling.type == RopeScalingType::dynamic && s.position > c.max_position_embeddings
             ? s.position
             : 0);
  return s;
}

void LlamaInference::reset() {
  if (sequences_.size() == 1) {  // keep the cache's memory
    Sequence& s = sequences_[0];
    for (auto& cache : s.keys)
      cache.clear();
    for (auto& cache : s.values)
      cache.clear();
    s.position = 0;
    s.frequencies = frequencies(config(), 0);  // back from a grown dynamic base
    return;
  }
  KvCache empty;
  check_cache(empty);
  sequences_.clear();
  sequences_.push_back(new_sequence(std::move(empty), 0));
}

void LlamaInference::adopt_caches(std::vector<KvCache> caches, std::int64_t room) {
  for (KvCache& cache : caches)
    check_cache(cache);
  // The old sequences go first, each cache as soon as it is copied: a batch's cache is held
  // once, plus one sequence's.
  sequences_.clear();
  sequences_.reserve(caches.size());
  for (KvCache& cache : caches)
    sequences_.push_back(new_sequence(std::move(cache), std::max<std::int64_t>(room, 0)));
}

const std::uint16_t* LlamaInference::bf16_bits(const std::vector<float>& matrix) const {
  if (layer_bits_.empty()) return nullptr;
  if (&matrix == &model_.weights.output_matrix()) return output_bits_.data();
  const std::uint16_t* found = nullptr;
  for (std::size_t l = 0; l < layer_bits_.size() && found == nullptr; ++l)
    for_each_matrix(model_.weights.layers[l], layer_bits_[l],
                    [&](const std::vector<float>& w, const std::vector<std::uint16_t>& b) {
                      if (&matrix == &w) found = b.data();
                    });
  return found;
}

std::int64_t LlamaInference::position(std::int64_t sequence) const {
  require(sequence >= 0 && sequence < sequences(), "inference: sequence {} of {}", sequence,
          sequences());
  return sequences_[to_size(sequence)].position;
}

std::span<const float> LlamaInference::step(std::int32_t token) {
  const DecodeFeed feed{0, token};
  return step(std::span<const DecodeFeed>(&feed, 1));
}

// att_out [feeds, n_heads, head_dim] of `layer`: each feed's query heads against its own
// sequence's cache (the new token's key and value already appended), one work item per
// (feed, KV head) so the heads of a GQA group share their pass over the keys and values.
void LlamaInference::attention(std::span<const DecodeFeed> feeds, std::size_t layer) {
  const LlamaConfig& c = config();
  const std::int64_t n_heads = c.num_attention_heads, n_kv = c.num_key_value_heads;
  const std::int64_t group = n_heads / n_kv, head_dim = c.resolved_head_dim();
  const std::int64_t q_dim = c.q_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::int64_t longest = 0;
  for (const DecodeFeed& f : feeds)
    longest = std::max(longest, sequences_[to_size(f.sequence)].position + 1);
  const std::int64_t items = static_cast<std::int64_t>(feeds.size()) * n_kv;
  scores_.resize(to_size(items * group * longest));
  // Each item writes only its own rows of scores_ and att_out_: any thread, the same bits.
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
  for (std::int64_t item = 0; item < items; ++item) {
    const std::int64_t i = item / n_kv, g = item % n_kv;
    const Sequence& s = sequences_[to_size(feeds[to_size(i)].sequence)];
    const std::int64_t length = s.position + 1;  // itself included
    float* scores = scores_.data() + item * group * longest;
    const float* q = q_.data() + i * q_dim + g * group * head_dim;
    // scores [group, length] = q_group [group, head_dim] @ K_g [length, head_dim]^T * scale
    const std::size_t head = layer * to_size(n_kv) + to_size(g);
    // (One item alone, an MQA model stepping one sequence, spreads its keys over the threads.)
    detail::batched_matvec(s.keys[head].data(), head_dim, nullptr, length, head_dim, q, head_dim,
                           group, scores, longest, items == 1);
    for (std::int64_t h = 0; h < group; ++h) {
      float* row = scores + h * longest;
      for (std::int64_t t = 0; t < length; ++t)
        row[t] *= scale;
      softmax(row, length);
    }
    // out_group [group, head_dim] = scores @ V_g [length, head_dim]
    detail::weighted_rows_sum(scores, longest, group, s.values[head].data(), head_dim, length,
                              head_dim, att_out_.data() + i * q_dim + g * group * head_dim,
                              head_dim);
  }
}

std::span<const float> LlamaInference::step(std::span<const DecodeFeed> feeds) {
  const LlamaConfig& c = model_.config;
  const LlamaWeights& w = model_.weights;
  const std::int64_t B = static_cast<std::int64_t>(feeds.size());
  require(B > 0, "inference: a step with no tokens");
  std::vector<bool> fed(sequences_.size(), false);
  const std::optional<std::int64_t> window = c.attention_window();
  for (const DecodeFeed& f : feeds) {
    require(f.sequence >= 0 && f.sequence < sequences(), "inference: sequence {} of {}", f.sequence,
            sequences());
    require(!fed[to_size(f.sequence)], "inference: sequence {} fed twice in one step", f.sequence);
    fed[to_size(f.sequence)] = true;
    require(f.token >= 0 && f.token < c.vocab_size,
            "generate: token id {} is outside the vocabulary [0, {})", f.token, c.vocab_size);
    const std::int64_t position = sequences_[to_size(f.sequence)].position;
    require(!window || position < *window,
            "generate: position {} reaches the model's sliding window ({}), which inference "
            "does not implement",
            position, window.value_or(0));
  }

  const std::int64_t dim = c.hidden_size, inter = c.intermediate_size;
  const std::int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const std::int64_t n_kv = c.num_key_value_heads, head_dim = c.resolved_head_dim();
  for (auto [buffer, width] : {std::pair{&x_, dim},
                               {&xb_, dim},
                               {&q_, q_dim},
                               {&k_, kv_dim},
                               {&v_, kv_dim},
                               {&att_out_, q_dim},
                               {&gate_, inter},
                               {&up_, inter},
                               {&logits_, c.vocab_size}})
    buffer->resize(to_size(B * width));

  // cos/sin of each feed's position, shared by q and k of every layer (float32, HF's fp32 RoPE).
  std::vector<rope::RotationTable> rotations;
  rotations.reserve(to_size(B));
  for (const DecodeFeed& f : feeds) {
    Sequence& s = sequences_[to_size(f.sequence)];
    // Dynamic NTK scaling grows the RoPE base once the sequence passes max_position_embeddings:
    // recomputed for every longer sequence, as transformers' dynamic_rope_update does (keys
    // already cached keep the rotation they were stored with, as in transformers' KV cache).
    if (c.rope_scaling.type == RopeScalingType::dynamic &&
        s.position + 1 > c.max_position_embeddings)
      s.frequencies = frequencies(c, s.position + 1);
    const std::int32_t position = static_cast<std::int32_t>(s.position);
    rotations.emplace_back(s.frequencies, std::span<const std::int32_t>(&position, 1),
                           rope::RopeMode::fp32);
  }

  // x [B, dim] = embedding rows of the tokens
  for (std::int64_t i = 0; i < B; ++i)
    std::copy_n(w.embed_tokens.begin() + static_cast<std::ptrdiff_t>(feeds[to_size(i)].token * dim),
                dim, x_.begin() + i * dim);

  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const LlamaLayerWeights& layer = w.layers[l];
    const LayerBits& bits = layer_bits_.empty() ? kNoBits : layer_bits_[l];
    // Attention block: x += o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x).
    rmsnorm_rows(xb_.data(), x_.data(), layer.input_norm, B, dim, c.rms_norm_eps);
    linear(q_.data(), layer.q_proj, bits.q_proj, layer.q_bias, xb_.data(), B, q_dim, dim);
    linear(k_.data(), layer.k_proj, bits.k_proj, layer.k_bias, xb_.data(), B, kv_dim, dim);
    linear(v_.data(), layer.v_proj, bits.v_proj, layer.v_bias, xb_.data(), B, kv_dim, dim);
    for (std::int64_t i = 0; i < B; ++i) {
      rotations[to_size(i)].forward(q_.data() + i * q_dim, c.num_attention_heads);
      rotations[to_size(i)].forward(k_.data() + i * kv_dim, c.num_key_value_heads);
      Sequence& s = sequences_[to_size(feeds[to_size(i)].sequence)];
      for (std::int64_t g = 0; g < n_kv; ++g) {
        const auto from = i * kv_dim + g * head_dim;
        std::vector<float>& keys = s.keys[l * to_size(n_kv) + to_size(g)];
        std::vector<float>& values = s.values[l * to_size(n_kv) + to_size(g)];
        keys.insert(keys.end(), k_.begin() + from, k_.begin() + from + head_dim);
        values.insert(values.end(), v_.begin() + from, v_.begin() + from + head_dim);
      }
    }
    attention(feeds, l);
    linear(xb_.data(), layer.o_proj, bits.o_proj, layer.o_bias, att_out_.data(), B, dim, q_dim);
    detail::add_range(x_.data(), xb_.data(), B * dim, false, x_.data());

    // MLP block: x += down(silu(gate(h)) * up(h)), h = rmsnorm(x).
    rmsnorm_rows(xb_.data(), x_.data(), layer.post_attention_norm, B, dim, c.rms_norm_eps);
    linear(gate_.data(), layer.gate_proj, bits.gate_proj, layer.gate_bias, xb_.data(), B, inter,
           dim);
    linear(up_.data(), layer.up_proj, bits.up_proj, layer.up_bias, xb_.data(), B, inter, dim);
    detail::swiglu_forward_range(gate_.data(), up_.data(), B * inter, false, gate_.data());
    linear(xb_.data(), layer.down_proj, bits.down_proj, layer.down_bias, gate_.data(), B, dim,
           inter);
    detail::add_range(x_.data(), xb_.data(), B * dim, false, x_.data());
  }

  // logits [B, vocab] = rmsnorm(x) @ lm_head [vocab, dim]^T
  rmsnorm_rows(xb_.data(), x_.data(), w.final_norm, B, dim, c.rms_norm_eps);
  linear(logits_.data(), w.output_matrix(), output_bits_, {}, xb_.data(), B, c.vocab_size, dim);
  for (const DecodeFeed& f : feeds)
    ++sequences_[to_size(f.sequence)].position;
  return logits_;
}

}  // namespace anchorctx::model
