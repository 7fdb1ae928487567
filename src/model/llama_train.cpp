// The training model, top to bottom. Shapes: T tokens, H hidden, I intermediate, Hq/Hkv heads,
// D head_dim, qd = Hq*D, kvd = Hkv*D, V vocabulary.
#include "anchorctx/model/llama_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"

namespace anchorctx::model {

std::string_view to_string(Precision precision) {
  return precision == Precision::bf16 ? "bf16" : "fp32";
}

std::optional<Precision> parse_precision(std::string_view name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  return std::nullopt;
}

rope::RopeMode default_rope_mode(Precision precision) {
  return precision == Precision::bf16 ? rope::RopeMode::hf_bf16 : rope::RopeMode::fp32;
}

// What one layer's forward leaves for its backward.
struct LlamaTrainModel::LayerActs {
  std::vector<float> xn1, rstd1;   // input norm: out [T, H], rstd [T]
  std::vector<float> q, k, v;      // after RoPE (q, k): [T, qd], [T, kvd], [T, kvd]
  std::vector<float> o, lse;       // attention output [T, qd], log-sum-exp [Hq, T]
  std::vector<float> x_mid;        // residual after attention [T, H]
  std::vector<float> xn2, rstd2;   // post-attention norm
  std::vector<float> gate, up, h;  // MLP [T, I] each

  void resize(std::int64_t T, std::int64_t H, std::int64_t I, std::int64_t qd, std::int64_t kvd,
              std::int64_t heads) {
    const auto n = [](std::int64_t v) { return static_cast<std::size_t>(v); };
    xn1.resize(n(T * H));
    rstd1.resize(n(T));
    q.resize(n(T * qd));
    k.resize(n(T * kvd));
    v.resize(n(T * kvd));
    o.resize(n(T * qd));
    lse.resize(n(heads * T));
    x_mid.resize(n(T * H));
    xn2.resize(n(T * H));
    rstd2.resize(n(T));
    gate.resize(n(T * I));
    up.resize(n(T * I));
    h.resize(n(T * I));
  }
};

struct LlamaTrainModel::LayerNames {
  const ParameterInfo *input_norm, *q, *k, *v, *o, *post_norm, *gate, *up, *down;
  const ParameterInfo *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;
  const ParameterInfo *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
};

LlamaTrainModel::LlamaTrainModel(LlamaConfig config, RunOptions options)
    : config_(std::move(config)), options_(options) {
  validate(config_);
  const bool pair_ok = options_.precision == Precision::fp32
                           ? options_.rope_mode == rope::RopeMode::fp32
                           : options_.rope_mode == rope::RopeMode::hf_bf16 ||
                                 options_.rope_mode == rope::RopeMode::exact;
  if (!pair_ok)
    fail(
        "precision {} does not run with rope mode {} (fp32 takes fp32; bf16 takes hf_bf16 or "
        "exact)",
        to_string(options_.precision), rope::to_string(options_.rope_mode));
  head_dim_ = config_.resolved_head_dim();
  if (head_dim_ % 8 != 0 || head_dim_ > 256)
    fail("head_dim {} is not supported by the attention kernels (a multiple of 8, at most 256)",
         head_dim_);
  require(options_.loss_chunk > 0, "loss_chunk must be positive");
  q_dim_ = config_.q_dim();
  kv_dim_ = config_.kv_dim();
  round_ = options_.precision == Precision::bf16;
  if (round_ && options_.bf16_compute == Bf16Compute::native) {
    std::string why;
    if (!native_bf16_available(&why))
      fail("bf16 compute native is unavailable: {} (use emulated)", why);
    compute_ = Bf16Compute::native;
  }
  layout_ = ParameterLayout::for_config(config_);
  params_.assign(layout_.total(), 0.0f);
  grads_.assign(layout_.total(), 0.0f);

  const auto find = [&](const std::string& name) { return layout_.find(name); };
  embed_ = &layout_.at("model.embed_tokens.weight");
  final_norm_ = &layout_.at("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : &layout_.at("lm_head.weight");
  for (std::int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerNames n{};
    n.input_norm = &layout_.at(p + "input_layernorm.weight");
    n.q = &layout_.at(p + "self_attn.q_proj.weight");
    n.k = &layout_.at(p + "self_attn.k_proj.weight");
    n.v = &layout_.at(p + "self_attn.v_proj.weight");
    n.o = &layout_.at(p + "self_attn.o_proj.weight");
    n.post_norm = &layout_.at(p + "post_attention_layernorm.weight");
    n.gate = &layout_.at(p + "mlp.gate_proj.weight");
    n.up = &layout_.at(p + "mlp.up_proj.weight");
    n.down = &layout_.at(p + "mlp.down_proj.weight");
    n.q_bias = find(p + "self_attn.q_proj.bias");
    n.k_bias = find(p + "self_attn.k_proj.bias");
    n.v_bias = find(p + "self_attn.v_proj.bias");
    n.o_bias = find(p + "self_attn.o_proj.bias");
    n.gate_bias = find(p + "mlp.gate_proj.bias");
    n.up_bias = find(p + "mlp.up_proj.bias");
    n.down_bias = find(p + "mlp.down_proj.bias");
    names_.push_back(n);
  }
}

LlamaTrainModel::~LlamaTrainModel() = default;

void LlamaTrainModel::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), 0.0f);
}

const float* LlamaTrainModel::weight(const ParameterInfo& info) const {
  return (round_ ? bf16_params_.data() : params_.data()) + info.offset;
}

std::int64_t LlamaTrainModel::activation_bytes(std::int64_t T) const {
  const std::int64_t H = config_.hidden_size, I = config_.intermediate_size;
  const std::int64_t L = config_.num_hidden_layers, Hq = config_.num_attention_heads;
  const std::int64_t per_layer = T * (4 * H + 2 * q_dim_ + 2 * kv_dim_ + 3 * I + 2 + Hq);
  const std::int64_t stored_layers = options_.checkpointing ? 1 : L;
  const std::int64_t inputs = (L + 1) * T * H;
  const std::int64_t final_norm = T * (H + 1);
  const std::int64_t backward = 2 * T * H +                                  // dx_a, dx_b
                                T * (2 * q_dim_ + 2 * kv_dim_ + H + 3 * I);  // layer scratch
  const std::int64_t loss = std::min(options_.loss_chunk, T) * (config_.vocab_size + 2 * H);
  return 4 * (stored_layers * per_layer + inputs + final_norm + backward + loss);
}

void LlamaTrainModel::check_batch(const TrainBatch& b) const {
  require(b.plan != nullptr, "batch: no attention plan");
  const std::int64_t T = static_cast<std::int64_t>(b.input_ids.size());
  if (b.plan->layout().total_tokens() != T)
    fail("batch: {} input ids but the attention layout holds {} tokens", T,
         b.plan->layout().total_tokens());
  if (static_cast<std::int64_t>(b.targets.size()) != T ||
      static_cast<std::int64_t>(b.position_ids.size()) != T)
    fail("batch: input_ids, targets and position_ids differ in length ({}, {}, {})", T,
         b.targets.size(), b.position_ids.size());
  if (config_.sliding_window) {
    const auto& layout = b.plan->layout();
    for (int s = 0; s < layout.num_sequences(); ++s)
      if (layout.seq_len(s) > *config_.sliding_window)
        fail(
            "batch: sequence {} has {} tokens, beyond the model's sliding_window {} (sliding "
            "windows are not implemented)",
            s, layout.seq_len(s), *config_.sliding_window);
  }
}

void LlamaTrainModel::prepare_buffers(std::int64_t T) {
  const std::int64_t H = config_.hidden_size, I = config_.intermediate_size;
  const std::size_t L = static_cast<std::size_t>(config_.num_hidden_layers);
  acts_.resize(options_.checkpointing ? 1 : L);
  for (LayerActs& a : acts_)
    a.resize(T, H, I, q_dim_, kv_dim_, config_.num_attention_heads);
  inputs_.resize(L + 1);
  for (auto& x : inputs_)
    x.resize(static_cast<std::size_t>(T * H));
  final_rstd_.resize(static_cast<std::size_t>(T));
  final_out_.resize(static_cast<std::size_t>(T * H));
  tokens_ = T;
}

// ---------------------------------------------------------------------------------------------
// Attention: RoPE'd q, k and v through the block-sparse kernels in the precision's dtype.

void LlamaTrainModel::attention_forward(LayerActs& a) {
  const attention::AttentionDims dims{static_cast<int>(config_.num_attention_heads),
                                      static_cast<int>(config_.num_key_value_heads),
                                      static_cast<int>(head_dim_)};
  const attention::KernelOptions kopt{0.0f, options_.threads};
  // The float32 kernel in every mode. In bf16 the inputs hold bf16 values (hf_bf16) or float32
  // rotated q/k with bf16 v (exact); the kernel's bf16 path would widen the same values to
  // float32 and round the output once, which is what rounding `o` here does, without the
  // conversions (5% of a step).
  attention::forward(
      *batch_->plan, dims,
      {core::DType::f32, a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data()}, kopt);
  if (round_) round_to_bf16(a.o);
}

void LlamaTrainModel::attention_backward(LayerActs& a, const float* d_o, float* dq, float* dk,
                                         float* dv) {
  const attention::AttentionDims dims{static_cast<int>(config_.num_attention_heads),
                                      static_cast<int>(config_.num_key_value_heads),
                                      static_cast<int>(head_dim_)};
  const attention::KernelOptions kopt{0.0f, options_.threads};
  attention::backward(*batch_->plan, dims,
                      {core::DType::f32, a.q.data(), a.k.data(), a.v.data(), a.o.data(), d_o,
                       a.lse.data(), dq, dk, dv},
                      kopt);
  if (round_) {
    round_to_bf16({dq, a.q.size()});
    round_to_bf16({dk, a.k.size()});
    round_to_bf16({dv, a.v.size()});
  }
}

// ---------------------------------------------------------------------------------------------
// One decoder layer.

// x_out [T, H] = layer(x_in [T, H]); fills `a` for the backward.
void LlamaTrainModel::layer_forward(int l, const float* x_in, float* x_out, LayerActs& a) {
  const LayerNames& n = names_[static_cast<std::size_t>(l)];
  const std::int64_t T = tokens_, H = config_.hidden_size, I = config_.intermediate_size;
  const auto w = [&](const ParameterInfo* p) { return p ? weight(*p) : nullptr; };
  const double eps = config_.rms_norm_eps;

  // Attention block: x_mid = x_in + o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x_in).
  rmsnorm_forward(x_in, w(n.input_norm), T, H, eps, round_, a.xn1.data(), a.rstd1.data());
  linear_forward(a.xn1.data(), w(n.q), w(n.q_bias), T, H, q_dim_, round_, a.q.data(), compute_);
  linear_forward(a.xn1.data(), w(n.k), w(n.k_bias), T, H, kv_dim_, round_, a.k.data(), compute_);
  linear_forward(a.xn1.data(), w(n.v), w(n.v_bias), T, H, kv_dim_, round_, a.v.data(), compute_);
  rotation_.forward(a.q.data(), config_.num_attention_heads);
  rotation_.forward(a.k.data(), config_.num_key_value_heads);
  if (hook_ && *hook_) (*hook_)(l, a.q, a.k);
  attention_forward(a);
  linear_forward(a.o.data(), w(n.o), w(n.o_bias), T, q_dim_, H, round_, x_out, compute_);
  add_forward(x_in, x_out, T * H, round_, a.x_mid.data());

  // MLP block: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)), xn2 = rmsnorm(x_mid).
  rmsnorm_forward(a.x_mid.data(), w(n.post_norm), T, H, eps, round_, a.xn2.data(), a.rstd2.data());
  linear_forward(a.xn2.data(), w(n.gate), w(n.gate_bias), T, H, I, round_, a.gate.data(), compute_);
  linear_forward(a.xn2.data(), w(n.up), w(n.up_bias), T, H, I, round_, a.up.data(), compute_);
  swiglu_forward(a.gate.data(), a.up.data(), T * I, round_, a.h.data());
  linear_forward(a.h.data(), w(n.down), w(n.down_bias), T, I, H, round_, x_out, compute_);
  add_forward(a.x_mid.data(), x_out, T * H, round_, x_out);
}

// dx [T, H]: in, the gradient of the layer's output; out, of its input. Weight gradients add up.
void LlamaTrainModel::layer_backward(int l, const float* x_in, LayerActs& a, float* dx) {
  const LayerNames& n = names_[static_cast<std::size_t>(l)];
  const std::int64_t T = tokens_, H = config_.hidden_size, I = config_.intermediate_size;
  const auto w = [&](const ParameterInfo* p) { return p ? weight(*p) : nullptr; };
  const auto g = [&](const ParameterInfo* p) { return p ? grad(*p) : nullptr; };
  const auto round = [&](std::vector<float>& v) {
    if (round_) round_to_bf16(v);
  };

  // MLP block (the residual passes dx through unchanged).
  linear_backward(a.h.data(), w(n.down), dx, T, I, H, false, dh_.data(), g(n.down), g(n.down_bias),
                  compute_);
  round(dh_);
  swiglu_backward(a.gate.data(), a.up.data(), dh_.data(), T * I, dgate_.data(), dup_.data());
  round(dgate_);
  round(dup_);
  linear_backward(a.xn2.data(), w(n.gate), dgate_.data(), T, H, I, false, dxn_.data(), g(n.gate),
                  g(n.gate_bias), compute_);
  linear_backward(a.xn2.data(), w(n.up), dup_.data(), T, H, I, true, dxn_.data(), g(n.up),
                  g(n.up_bias), compute_);
  round(dxn_);
  rmsnorm_backward(a.x_mid.data(), w(n.post_norm), a.rstd2.data(), dxn_.data(), T, H, true, dx,
                   g(n.post_norm));
  if (round_) round_to_bf16({dx, static_cast<std::size_t>(T * H)});

  // Attention block.
  linear_backward(a.o.data(), w(n.o), dx, T, q_dim_, H, false, d_o_.data(), g(n.o), g(n.o_bias),
                  compute_);
  round(d_o_);
  attention_backward(a, d_o_.data(), dq_.data(), dk_.data(), dv_.data());
  rotation_.backward(dq_.data(), config_.num_attention_heads);
  rotation_.backward(dk_.data(), config_.num_key_value_heads);
  linear_backward(a.xn1.data(), w(n.q), dq_.data(), T, H, q_dim_, false, dxn_.data(), g(n.q),
                  g(n.q_bias), compute_);
  linear_backward(a.xn1.data(), w(n.k), dk_.data(), T, H, kv_dim_, true, dxn_.data(), g(n.k),
                  g(n.k_bias), compute_);
  linear_backward(a.xn1.data(), w(n.v), dv_.data(), T, H, kv_dim_, true, dxn_.data(), g(n.v),
                  g(n.v_bias), compute_);
  round(dxn_);
  rmsnorm_backward(x_in, w(n.input_norm), a.rstd1.data(), dxn_.data(), T, H, true, dx,
                   g(n.input_norm));
  if (round_) round_to_bf16({dx, static_cast<std::size_t>(T * H)});
}

// ---------------------------------------------------------------------------------------------
// The model.

LossSum LlamaTrainModel::forward_backward(const TrainBatch& batch, double loss_scale) {
  return run(batch, true, loss_scale, {});
}

LossSum LlamaTrainModel::forward(const TrainBatch& batch, std::span<float> logits) {
  if (!logits.empty() &&
      logits.size() != batch.input_ids.size() * static_cast<std::size_t>(config_.vocab_size))
    fail("forward: logits holds {} floats, expected {} x {}", logits.size(), batch.input_ids.size(),
         config_.vocab_size);
  return run(batch, false, 0.0, logits);
}

LossSum LlamaTrainModel::forward(const TrainBatch& batch, const AttentionInputsHook& hook,
                                 std::span<float> logits) {
  hook_ = &hook;
  struct Reset {
    const AttentionInputsHook*& hook;
    ~Reset() { hook = nullptr; }
  } reset{hook_};
  return forward(batch, logits);
}

LossSum LlamaTrainModel::run(const TrainBatch& batch, bool backward, double loss_scale,
                             std::span<float> logits) {
  check_batch(batch);
  const std::int64_t T = static_cast<std::int64_t>(batch.input_ids.size());
  const std::int64_t H = config_.hidden_size, V = config_.vocab_size;
  const std::int64_t L = config_.num_hidden_layers;
  batch_ = &batch;
  prepare_buffers(T);
  if (round_) {
    bf16_params_.resize(params_.size());
    std::copy(params_.begin(), params_.end(), bf16_params_.begin());
    round_to_bf16(bf16_params_);
  }

  // RoPE tables for this batch's positions (dynamic scaling looks at the longest position).
  std::int32_t max_pos = 0;
  for (const std::int32_t p : batch.position_ids) {
    if (p < 0) fail("batch: negative position id {}", p);
    max_pos = std::max(max_pos, p);
  }
  frequencies_ = rope::compute_frequencies(
      {head_dim_, config_.rope_theta, config_.rope_scaling, config_.max_position_embeddings},
      static_cast<std::int64_t>(max_pos) + 1);
  rotation_ = rope::RotationTable(frequencies_, batch.position_ids, options_.rope_mode);

  embedding_forward(batch.input_ids, weight(*embed_), V, H, inputs_[0].data());
  for (std::int64_t l = 0; l < L; ++l) {
    LayerActs& a = acts_[options_.checkpointing ? 0 : static_cast<std::size_t>(l)];
    layer_forward(static_cast<int>(l), inputs_[l].data(), inputs_[l + 1].data(), a);
  }
  rmsnorm_forward(inputs_[L].data(), weight(*final_norm_), T, H, config_.rms_norm_eps, round_,
                  final_out_.data(), final_rstd_.data());
  if (!backward)
    return lm_head_cross_entropy(final_out_.data(), weight(*lm_head_), batch.targets, H, V,
                                 options_.loss_chunk, round_, 0.0, nullptr, nullptr,
                                 logits.empty() ? nullptr : logits.data(), compute_);

  // Backward buffers.
  const std::int64_t I = config_.intermediate_size;
  const auto sized = [](std::vector<float>& v, std::int64_t n) {
    v.resize(static_cast<std::size_t>(n));
  };
  sized(dx_, T * H);
  sized(d_o_, T * q_dim_);
  sized(dq_, T * q_dim_);
  sized(dk_, T * kv_dim_);
  sized(dv_, T * kv_dim_);
  sized(dxn_, T * H);
  sized(dh_, T * I);
  sized(dgate_, T * I);
  sized(dup_, T * I);
  if (options_.checkpointing) sized(recompute_out_, T * H);

  // LM head + loss, then the final norm: dx_ = d(hidden after the last layer).
  const LossSum loss = lm_head_cross_entropy(final_out_.data(), weight(*lm_head_), batch.targets, H,
                                             V, options_.loss_chunk, round_, loss_scale,
                                             dxn_.data(), grad(*lm_head_), nullptr, compute_);
  if (round_) round_to_bf16(dxn_);
  rmsnorm_backward(inputs_[L].data(), weight(*final_norm_), final_rstd_.data(), dxn_.data(), T, H,
                   false, dx_.data(), grad(*final_norm_));
  if (round_) round_to_bf16(dx_);

  for (std::int64_t l = L - 1; l >= 0; --l) {
    LayerActs* a = &acts_[static_cast<std::size_t>(l)];
    if (options_.checkpointing) {
      // Recompute this layer's activations from its saved input.
      a = &acts_[0];
      layer_forward(static_cast<int>(l), inputs_[l].data(), recompute_out_.data(), *a);
    }
    layer_backward(static_cast<int>(l), inputs_[l].data(), *a, dx_.data());
  }
  embedding_backward(batch.input_ids, dx_.data(), H, grad(*embed_));
  return loss;
}

}  // namespace anchorctx::model
