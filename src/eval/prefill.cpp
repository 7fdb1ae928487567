// The prefill forward (prefill.h), top to bottom: embedding, per layer the training layers'
// forward functions and the attention kernel, final norm, then the LM head over the rows that
// need it in chunks.
#include "anchorctx/eval/prefill.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/core/dtype.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::eval {
namespace {

std::size_t sz(std::int64_t v) {
  return static_cast<std::size_t>(v);
}

const float* ptr(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}

// logits [rows, V] = x [rows, H] W^T (rounded to bf16 when `round`), then per row: row_loss =
// logsumexp - logit[target] (float32 exponentials, float64 sum, as the training cross-entropy).
void chunk_losses(const float* x, std::int64_t rows, const float* w, std::int64_t hidden,
                  std::int64_t vocab, bool round, model::Bf16Compute compute,
                  const model::Bf16Bits& bits, const std::int32_t* targets, float* logits,
                  double* loss) {
  model::linear_forward(x, w, nullptr, rows, hidden, vocab, round, logits, compute, bits);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < rows; ++i) {
    float* l = logits + i * vocab;
    const std::int32_t target = targets ? targets[i] : -1;
    if (target < 0) {
      if (loss) loss[i] = std::numeric_limits<double>::quiet_NaN();
      continue;
    }
    const float m = *std::max_element(l, l + vocab);
    double sum = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v)
      sum += std::exp(l[v] - m);
    loss[i] = static_cast<double>(m) + std::log(sum) - static_cast<double>(l[target]);
  }
}

}  // namespace

Prefill::Prefill(const model::LlamaModel& model, PrefillOptions options)
    : Prefill(model, options, nullptr) {}

Prefill::Prefill(const model::LlamaInference& decoder, PrefillOptions options)
    : Prefill(decoder.model(), options, &decoder) {}

Prefill::Prefill(const model::LlamaModel& model, PrefillOptions options,
                 const model::LlamaInference* decoder)
    : model_(model), options_(options) {
  const std::int64_t d = model_.config.resolved_head_dim();
  if (d % 8 != 0 || d > 256)
    fail(
        "prefill: head_dim {} is not supported by the attention kernels (a multiple of 8, at "
        "most 256)",
        d);
  require(options_.loss_chunk > 0 && options_.row_chunk > 0,
          "prefill: loss_chunk and row_chunk must be positive");
  // bf16: the weights rounded, in a copy unless they already are (Engine rounds its model; a
  // decoder that keeps bf16 bits has checked that its model is of bf16 values).
  const auto bf16_values = [&] {
    return (decoder != nullptr && decoder->bf16_bits(model_.weights.output_matrix()) != nullptr) ||
           model::holds_bf16_values(model_.weights);
  };
  if (options_.precision == model::Precision::bf16 && !bf16_values()) {
    rounded_ = model_.weights;
    model::round_to_bf16(rounded_);
    use_rounded_ = true;
  }
  std::string why;
  if (native() && !model::native_bf16_available(&why))
    fail("prefill: native bf16 compute is unavailable here: {}", why);
  if (native()) {
    const auto keep = [&](const std::vector<float>& w) {
      const std::uint16_t* shared = decoder != nullptr ? decoder->bf16_bits(w) : nullptr;
      if (shared == nullptr) {
        std::vector<std::uint16_t>& bits = owned_bits_.emplace_back(w.size());
        model::to_bf16_bits(w, bits);
        shared = bits.data();
      }
      weight_bits_[w.data()] = shared;
    };
    for (const model::LlamaLayerWeights& l : weights().layers)
      for (const std::vector<float>* w :
           {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
        keep(*w);
    keep(weights().output_matrix());
  }
}

model::Bf16Bits Prefill::bits_of(const std::vector<float>& weight) const {
  const auto it = weight_bits_.find(weight.data());
  return {nullptr, it == weight_bits_.end() ? nullptr : it->second, nullptr};
}

bool Prefill::native() const {
  return options_.precision == model::Precision::bf16 &&
         options_.bf16_compute == model::Bf16Compute::native;
}

const model::LlamaWeights& Prefill::weights() const {
  return use_rounded_ ? rounded_ : model_.weights;
}

PrefillResult Prefill::run(const PrefillRequest& req) {
  const model::LlamaConfig& c = model_.config;
  const model::LlamaWeights& w = weights();
  const bool round = options_.precision == model::Precision::bf16;
  require(req.plan != nullptr, "prefill: no attention plan");
  const std::int64_t T = static_cast<std::int64_t>(req.input_ids.size());
  const attention::AttentionLayout& layout = req.plan->layout();
  if (layout.total_tokens() != T || static_cast<std::int64_t>(req.position_ids.size()) != T)
    fail("prefill: {} input ids, {} position ids, {} tokens in the attention layout", T,
         req.position_ids.size(), layout.total_tokens());
  if (!req.targets.empty() && static_cast<std::int64_t>(req.targets.size()) != T)
    fail("prefill: {} targets for {} input ids", req.targets.size(), T);
  for (std::int64_t t = 0; t < static_cast<std::int64_t>(req.targets.size()); ++t)
    if (req.targets[sz(t)] < -1 || req.targets[sz(t)] >= c.vocab_size)
      fail("prefill: target[{}] = {} is outside [-1, {})", t, req.targets[sz(t)], c.vocab_size);
  if (const auto window = c.attention_window())
    for (int s = 0; s < layout.num_sequences(); ++s)
      if (layout.seq_len(s) > *window)
        fail(
            "prefill: sequence {} has {} tokens, beyond the model's sliding_window {} (not "
            "implemented)",
            s, layout.seq_len(s), *window);

  const std::int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const std::int64_t qd = c.q_dim(), kvd = c.kv_dim(), Hq = c.num_attention_heads;
  const double eps = c.rms_norm_eps;

  std::int32_t max_pos = 0;
  for (const std::int32_t p : req.position_ids) {
    if (p < 0) fail("prefill: negative position id {}", p);
    max_pos = std::max(max_pos, p);
  }
  const rope::RopeFrequencies freqs = rope::compute_frequencies(
      {c.resolved_head_dim(), c.rope_theta, c.rope_scaling, c.max_position_embeddings},
      static_cast<std::int64_t>(max_pos) + 1);
  const rope::RotationTable rotation(freqs, req.position_ids,
                                     model::default_rope_mode(options_.precision));

  PrefillResult result;
  const std::size_t L = w.layers.size();
  if (req.keep_cache) {
    result.keys.resize(L);
    result.values.resize(L);
  }
  // Every buffer is written before it is read; sized exactly (whole-vector calls below).
  const auto sized = [](auto& v, std::int64_t n) -> auto& {
    v.resize(sz(n));
    return v;
  };
  Buffers& buf = buffers_;
  using Floats = std::vector<float>;
  Floats& x = sized(buf.x, T * H);
  Floats& xn = sized(buf.xn, T * H);
  Floats& x_mid = sized(buf.x_mid, T * H);
  Floats& rstd = sized(buf.rstd, T);
  Floats& q = sized(buf.q, T * qd);
  Floats& o = sized(buf.o, T * qd);
  Floats& lse = sized(buf.lse, Hq * T);
  Floats& gate = sized(buf.gate, T * I);
  Floats& up = sized(buf.up, T * I);
  Floats& k_scratch = sized(buf.k, req.keep_cache ? 0 : T * kvd);  // without a cache to keep
  Floats& v_scratch = sized(buf.v, req.keep_cache ? 0 : T * kvd);
  const attention::AttentionDims dims{static_cast<int>(Hq), static_cast<int>(c.num_key_value_heads),
                                      static_cast<int>(c.resolved_head_dim())};
  const attention::KernelOptions kopt{0.0f, options_.threads, native()};
  const model::Bf16Compute compute =
      native() ? model::Bf16Compute::native : model::Bf16Compute::emulated;
  // Native attention takes bf16 tensors: q, k and v hold bf16 values here (rounded by their
  // projections, RoPE hf_bf16), so converting them is exact, as in the training forward.
  const std::int64_t native_rows = native() ? T : 0;
  std::vector<std::uint16_t>& q16 = sized(buf.q16, native_rows * qd);
  std::vector<std::uint16_t>& o16 = sized(buf.o16, native_rows * qd);
  std::vector<std::uint16_t>& k16 = sized(buf.k16, native_rows * kvd);
  std::vector<std::uint16_t>& v16 = sized(buf.v16, native_rows * kvd);

  // The projections run as GEMMs over row chunks cut at every sequence start (at most row_chunk
  // rows each): a BLAS's result for a row can depend on the GEMM's row count (small-matrix
  // kernels, blocking), so cutting at sequence starts makes each prompt's numbers independent of
  // what it is batched with (test BatchedPrefill.KeysValuesAndLogitsEqualOneAtATime).
  std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
  for (int b = 0; b < layout.num_sequences(); ++b)
    for (std::int64_t r = layout.seq_begin(b); r < layout.seq_begin(b) + layout.seq_len(b);
         r += options_.row_chunk)
      chunks.emplace_back(r, std::min<std::int64_t>(r + options_.row_chunk,
                                                    layout.seq_begin(b) + layout.seq_len(b)));
  const auto linear = [&](const float* in_rows, const std::vector<float>& weight,
                          const std::vector<float>& bias, std::int64_t in, std::int64_t out,
                          float* out_rows) {
    for (const auto& [r0, r1] : chunks)
      model::linear_forward(in_rows + r0 * in, weight.data(), ptr(bias), r1 - r0, in, out, round,
                            out_rows + r0 * out, compute, bits_of(weight));
  };

  model::embedding_forward(req.input_ids, w.embed_tokens.data(), V, H, x.data());
  for (std::size_t l = 0; l < L; ++l) {
    const model::LlamaLayerWeights& lw = w.layers[l];
    std::vector<float>& k = req.keep_cache ? result.keys[l] : k_scratch;
    std::vector<float>& v = req.keep_cache ? result.values[l] : v_scratch;
    k.resize(sz(T * kvd));
    v.resize(sz(T * kvd));
    // x_mid = x + o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x)
    model::rmsnorm_forward(x.data(), lw.input_norm.data(), T, H, eps, round, xn.data(),
                           rstd.data());
    linear(xn.data(), lw.q_proj, lw.q_bias, H, qd, q.data());
    linear(xn.data(), lw.k_proj, lw.k_bias, H, kvd, k.data());
    linear(xn.data(), lw.v_proj, lw.v_bias, H, kvd, v.data());
    rotation.forward(q.data(), Hq);
    rotation.forward(k.data(), c.num_key_value_heads);
    if (native()) {
      model::to_bf16_bits(q, q16);
      model::to_bf16_bits(k, k16);
      model::to_bf16_bits(v, v16);
      attention::forward(
          *req.plan, dims,
          {core::DType::bf16, q16.data(), k16.data(), v16.data(), o16.data(), lse.data()}, kopt);
      model::from_bf16_bits(o16, o);
    } else {
      attention::forward(*req.plan, dims,
                         {core::DType::f32, q.data(), k.data(), v.data(), o.data(), lse.data()},
                         kopt);
      if (round) model::round_to_bf16(o);
    }
    linear(o.data(), lw.o_proj, lw.o_bias, qd, H, xn.data());
    model::add_forward(x.data(), xn.data(), T * H, round, x_mid.data());
    // x = x_mid + down(silu(gate(h)) * up(h)), h = rmsnorm(x_mid)
    model::rmsnorm_forward(x_mid.data(), lw.post_attention_norm.data(), T, H, eps, round, xn.data(),
                           rstd.data());
    linear(xn.data(), lw.gate_proj, lw.gate_bias, H, I, gate.data());
    linear(xn.data(), lw.up_proj, lw.up_bias, H, I, up.data());
    model::swiglu_forward(gate.data(), up.data(), T * I, round, gate.data());
    linear(gate.data(), lw.down_proj, lw.down_bias, I, H, x.data());
    model::add_forward(x_mid.data(), x.data(), T * H, round, x.data());
  }
  model::rmsnorm_forward(x.data(), w.final_norm.data(), T, H, eps, round, xn.data(), rstd.data());

  const float* head = w.output_matrix().data();
  const model::Bf16Bits head_bits = bits_of(w.output_matrix());
  const std::int64_t chunk = std::min(options_.loss_chunk, std::max<std::int64_t>(T, 1));
  std::vector<float>& logits = buf.logits;
  if (!req.targets.empty()) {
    // Only the targeted rows go through the LM head, gathered `chunk` at a time.
    result.token_loss.assign(sz(T), std::numeric_limits<double>::quiet_NaN());
    std::vector<std::int64_t> rows;
    for (std::int64_t t = 0; t < T; ++t)
      if (req.targets[sz(t)] >= 0) rows.push_back(t);
    logits.resize(sz(chunk * V));
    std::vector<float>& xc = sized(buf.rows_x, chunk * H);
    std::vector<std::int32_t> tc(sz(chunk));
    std::vector<double> lc(sz(chunk));
    for (std::size_t r0 = 0; r0 < rows.size(); r0 += sz(chunk)) {
      const std::size_t n = std::min(sz(chunk), rows.size() - r0);
      for (std::size_t i = 0; i < n; ++i) {
        std::memcpy(xc.data() + i * sz(H), xn.data() + sz(rows[r0 + i] * H), sizeof(float) * sz(H));
        tc[i] = req.targets[sz(rows[r0 + i])];
      }
      chunk_losses(xc.data(), static_cast<std::int64_t>(n), head, H, V, round, compute, head_bits,
                   tc.data(), logits.data(), lc.data());
      for (std::size_t i = 0; i < n; ++i)
        result.token_loss[sz(rows[r0 + i])] = lc[i];
    }
  }
  if (req.last_logits) {
    // One row at a time, for the same reason as the row chunks above.
    const int B = layout.num_sequences();
    result.last_logits.assign(sz(static_cast<std::int64_t>(B) * V), 0.0f);
    for (int b = 0; b < B; ++b) {
      require(layout.seq_len(b) > 0, "prefill: sequence {} is empty", b);
      const std::int64_t t = layout.seq_begin(b) + layout.seq_len(b) - 1;
      chunk_losses(xn.data() + sz(t * H), 1, head, H, V, round, compute, head_bits, nullptr,
                   result.last_logits.data() + sz(b * V), nullptr);
    }
  }
  return result;
}

}  // namespace anchorctx::eval
