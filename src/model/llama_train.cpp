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
#include "anchorctx/model/op_profile.h"
#include "model/layers/gemm.h"

namespace anchorctx::model {

std::string_view to_string(Precision precision) {
  return core::enum_name(precision);
}

std::optional<Precision> parse_precision(std::string_view name) {
  return core::parse_enum<Precision>(name);
}

rope::RopeMode default_rope_mode(Precision precision) {
  return precision == Precision::bf16 ? rope::RopeMode::hf_bf16 : rope::RopeMode::fp32;
}

// What one layer's forward leaves for its backward (sizes: buffer_specs below).
struct LlamaTrainModel::LayerActs {
  std::vector<float> xn1, rstd1;   // input norm: out [T, H], rstd [T]
  std::vector<float> q, k, v;      // after RoPE (q, k): [T, qd], [T, kvd], [T, kvd]
  std::vector<float> o, lse;       // attention output [T, qd], log-sum-exp [Hq, T]
  std::vector<float> x_mid;        // residual after attention [T, H]
  std::vector<float> xn2, rstd2;   // post-attention norm
  std::vector<float> gate, up, h;  // MLP [T, I] each
  // Sequence parallel only: q, k, v, o for the whole window and this rank's heads,
  // [Tw, Hq', D], [Tw, Hkv', D] (lse is then [Hq', Tw]).
  std::vector<float> qh, kh, vh, oh;
};

namespace {

// Which buffers a spec stands for, and when they exist.
enum class Scope {
  stored_layer,     // LayerActs: one per layer, or one shared by all with checkpointing
  layer_input,      // inputs_: the embedding output and each layer's output, L + 1
  forward,          // a model member every call needs
  backward,         // a model member only a backward needs
  recompute,        // a model member only a backward with checkpointing needs
  bf16_weights,     // a model member only bf16 precision needs
  native_weights,   // a model member (bf16 bits) only native bf16 GEMMs need
  native_forward,   // the same, for every call
  native_backward,  // the same, only for a backward
  rope,             // allocated by rope::compute_frequencies / rope::RotationTable
  loss,             // lm_head_cross_entropy's per-thread chunk scratch (layers/cross_entropy.cpp)
  loss_backward,    // the same, only when it computes dx
  loss_native,      // lm_head_cross_entropy's bf16 chunk scratch, native bf16 GEMMs only
  loss_native_backward,  // the same, only when it computes dx
};
// What one row of a buffer counts.
enum class Rows { tokens, loss_chunk, one };
// Floats per row.
enum class Width {
  one,
  hidden,
  q_dim,
  kv_dim,
  intermediate,
  q_heads,
  half_head_dim,
  vocab,
  params,
  gemm_input,    // max(H, qd, I): the widest activation a GEMM reads
  attention_io,  // 2 qd + 2 kvd: q, k, v and o (or d_o, dq, dk and dv) side by side
};

}  // namespace

struct LlamaTrainModel::BufferSpec {
  std::string_view name, shape;
  Scope scope;
  Rows rows;
  Width width;
  std::vector<float> LayerActs::*layer = nullptr;               // Scope::stored_layer
  std::vector<float> LlamaTrainModel::*member = nullptr;        // the model's own scopes
  std::vector<std::uint16_t> LlamaTrainModel::*bits = nullptr;  // its bf16 buffers (2 bytes)
  int element_bytes = 4;
};

// The list (llm.c's activation sizes): prepare_buffers allocates from it, step_buffers sums it.
std::span<const LlamaTrainModel::BufferSpec> LlamaTrainModel::buffer_specs() {
  using A = LayerActs;
  using M = LlamaTrainModel;
  using enum Scope;
  static const BufferSpec specs[] = {
      {"layer.xn1", "[T, H]", stored_layer, Rows::tokens, Width::hidden, &A::xn1},
      {"layer.rstd1", "[T]", stored_layer, Rows::tokens, Width::one, &A::rstd1},
      {"layer.q", "[T, qd]", stored_layer, Rows::tokens, Width::q_dim, &A::q},
      {"layer.k", "[T, kvd]", stored_layer, Rows::tokens, Width::kv_dim, &A::k},
      {"layer.v", "[T, kvd]", stored_layer, Rows::tokens, Width::kv_dim, &A::v},
      {"layer.o", "[T, qd]", stored_layer, Rows::tokens, Width::q_dim, &A::o},
      {"layer.lse", "[Hq, T]", stored_layer, Rows::tokens, Width::q_heads, &A::lse},
      {"layer.x_mid", "[T, H]", stored_layer, Rows::tokens, Width::hidden, &A::x_mid},
      {"layer.xn2", "[T, H]", stored_layer, Rows::tokens, Width::hidden, &A::xn2},
      {"layer.rstd2", "[T]", stored_layer, Rows::tokens, Width::one, &A::rstd2},
      {"layer.gate", "[T, I]", stored_layer, Rows::tokens, Width::intermediate, &A::gate},
      {"layer.up", "[T, I]", stored_layer, Rows::tokens, Width::intermediate, &A::up},
      {"layer.h", "[T, I]", stored_layer, Rows::tokens, Width::intermediate, &A::h},
      {"inputs", "[T, H]", layer_input, Rows::tokens, Width::hidden},
      {"final_rstd", "[T]", forward, Rows::tokens, Width::one, nullptr, &M::final_rstd_},
      {"final_out", "[T, H]", forward, Rows::tokens, Width::hidden, nullptr, &M::final_out_},
      {"dx", "[T, H]", backward, Rows::tokens, Width::hidden, nullptr, &M::dx_},
      {"d_o", "[T, qd]", backward, Rows::tokens, Width::q_dim, nullptr, &M::d_o_},
      {"dq", "[T, qd]", backward, Rows::tokens, Width::q_dim, nullptr, &M::dq_},
      {"dk", "[T, kvd]", backward, Rows::tokens, Width::kv_dim, nullptr, &M::dk_},
      {"dv", "[T, kvd]", backward, Rows::tokens, Width::kv_dim, nullptr, &M::dv_},
      {"dxn", "[T, H]", backward, Rows::tokens, Width::hidden, nullptr, &M::dxn_},
      {"dh", "[T, I]", backward, Rows::tokens, Width::intermediate, nullptr, &M::dh_},
      {"dgate", "[T, I]", backward, Rows::tokens, Width::intermediate, nullptr, &M::dgate_},
      {"dup", "[T, I]", backward, Rows::tokens, Width::intermediate, nullptr, &M::dup_},
      {"recompute_out", "[T, H]", recompute, Rows::tokens, Width::hidden, nullptr,
       &M::recompute_out_},
      {"bf16_params", "[P]", bf16_weights, Rows::one, Width::params, nullptr, &M::bf16_params_},
      {"bf16_bits.weights", "[P]", native_weights, Rows::one, Width::params, nullptr, nullptr,
       &M::weight_bits_, 2},
      {"bf16_bits.x", "[T, max(H, qd, I)]", native_forward, Rows::tokens, Width::gemm_input,
       nullptr, nullptr, &M::x_bits_, 2},
      {"bf16_bits.dy", "[T, max(H, qd, I)]", native_backward, Rows::tokens, Width::gemm_input,
       nullptr, nullptr, &M::dy_bits_, 2},
      {"bf16_bits.attention", "[T, 2 qd + 2 kvd]", native_forward, Rows::tokens,
       Width::attention_io, nullptr, nullptr, &M::attn_bits_, 2},
      {"bf16_bits.attention_grad", "[T, 2 qd + 2 kvd]", native_backward, Rows::tokens,
       Width::attention_io, nullptr, nullptr, &M::attn_grad_bits_, 2},
      {"rope.inv_freq", "[D/2]", rope, Rows::one, Width::half_head_dim},
      {"rope.cos", "[T, D/2]", rope, Rows::tokens, Width::half_head_dim},
      {"rope.sin", "[T, D/2]", rope, Rows::tokens, Width::half_head_dim},
      {"loss.x", "[c, H]", loss, Rows::loss_chunk, Width::hidden},
      {"loss.logits", "[c, V]", loss, Rows::loss_chunk, Width::vocab},
      {"loss.dx", "[c, H]", loss_backward, Rows::loss_chunk, Width::hidden},
      {"loss.x_bf16", "[c, H]", loss_native, Rows::loss_chunk, Width::hidden, nullptr, nullptr,
       nullptr, 2},
      {"loss.dlogits_bf16", "[c, V]", loss_native_backward, Rows::loss_chunk, Width::vocab, nullptr,
       nullptr, nullptr, 2},
  };
  return specs;
}

// `params`: the flat parameter buffer's size (ParameterLayout::total, padding included).
std::int64_t LlamaTrainModel::width_of(const BufferSpec& spec, const LlamaConfig& config,
                                       std::int64_t params) {
  switch (spec.width) {
    case Width::one:
      return 1;
    case Width::hidden:
      return config.hidden_size;
    case Width::q_dim:
      return config.q_dim();
    case Width::kv_dim:
      return config.kv_dim();
    case Width::intermediate:
      return config.intermediate_size;
    case Width::q_heads:
      return config.num_attention_heads;
    case Width::half_head_dim:
      return config.resolved_head_dim() / 2;
    case Width::vocab:
      return config.vocab_size;
    case Width::params:
      return params;
    case Width::gemm_input:
      return std::max({config.hidden_size, config.q_dim(), config.intermediate_size});
    case Width::attention_io:
      return 2 * config.q_dim() + 2 * config.kv_dim();
  }
  return 0;
}

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

  tensors_ = layout_.tensors();
  // The per-layer buffer sets; their buffers are sized per batch (prepare_buffers).
  const std::size_t L = static_cast<std::size_t>(config_.num_hidden_layers);
  acts_.resize(options_.checkpointing ? 1 : L);
  inputs_.resize(L + 1);
  lm_head_ = config_.tie_word_embeddings ? tensors_.embed_tokens : tensors_.lm_head;
}

LlamaTrainModel::~LlamaTrainModel() = default;

void LlamaTrainModel::set_sequence_parallel(dist::Communicator* group) {
  sp_group_ = group && group->world_size() > 1 ? group : nullptr;
  exchange_.reset();
  if (sp_group_)  // refuses impossible numbers now, before any step
    plan_sequence_shards(0, sp_group_->world_size(), sp_group_->rank(),
                         static_cast<int>(config_.num_attention_heads),
                         static_cast<int>(config_.num_key_value_heads));
}

std::pair<std::int64_t, std::int64_t> LlamaTrainModel::token_shard(std::int64_t window) const {
  if (!sp_group_) return {0, window};
  const SequenceShards s = plan_sequence_shards(window, sp_group_->world_size(), sp_group_->rank(),
                                                static_cast<int>(config_.num_attention_heads),
                                                static_cast<int>(config_.num_key_value_heads));
  return {s.begin(), s.end()};
}

// The exchange for a window of Tw tokens, and the buffers that hold the window's q, k, v, o
// (and their gradients) for this rank's heads.
void LlamaTrainModel::prepare_exchange(std::int64_t Tw, bool backward) {
  if (!exchange_ || exchange_->shards().token_start.back() != Tw)
    exchange_ = std::make_unique<UlyssesExchange>(
        *sp_group_,
        plan_sequence_shards(Tw, sp_group_->world_size(), sp_group_->rank(),
                             static_cast<int>(config_.num_attention_heads),
                             static_cast<int>(config_.num_key_value_heads)),
        head_dim_);
  const SequenceShards& s = exchange_->shards();
  const auto qn = static_cast<std::size_t>(Tw * s.local_q_heads() * head_dim_);
  const auto kvn = static_cast<std::size_t>(Tw * s.local_kv_heads() * head_dim_);
  for (LayerActs& a : acts_) {
    a.qh.resize(qn);
    a.kh.resize(kvn);
    a.vh.resize(kvn);
    a.oh.resize(qn);
    a.lse.resize(static_cast<std::size_t>(Tw * s.local_q_heads()));
  }
  if (backward) {
    d_oh_.resize(qn);
    dqh_.resize(qn);
    dkh_.resize(kvn);
    dvh_.resize(kvn);
  }
}

void LlamaTrainModel::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), 0.0f);
}

const float* LlamaTrainModel::weight(const ParameterInfo& info) const {
  return (round_ ? bf16_params_.data() : params_.data()) + info.offset;
}

const std::uint16_t* LlamaTrainModel::weight_bits(const ParameterInfo* info) const {
  return compute_ == Bf16Compute::native && info ? weight_bits_.data() + info->offset : nullptr;
}

const std::uint16_t* LlamaTrainModel::to_bits(const float* src, std::int64_t width,
                                              std::vector<std::uint16_t>& bits) {
  if (compute_ != Bf16Compute::native) return nullptr;
  const OpScope scope(Op::gemm_bf16_convert);
  detail::float_to_bf16(src, tokens_ * width, bits.data());
  return bits.data();
}

std::vector<StepBuffer> LlamaTrainModel::step_buffers(std::int64_t T) const {
  return step_buffers(config_, options_, T);
}

std::vector<StepBuffer> LlamaTrainModel::step_buffers(const LlamaConfig& config,
                                                      const RunOptions& options, std::int64_t T) {
  const std::int64_t L = config.num_hidden_layers;
  const bool round = options.precision == Precision::bf16;
  const auto params = static_cast<std::int64_t>(ParameterLayout::for_config(config).total());
  std::vector<StepBuffer> out;
  for (const BufferSpec& spec : buffer_specs()) {
    if (spec.scope == Scope::recompute && !options.checkpointing) continue;
    if (spec.scope == Scope::bf16_weights && !round) continue;
    const bool native_only =
        spec.scope == Scope::native_weights || spec.scope == Scope::native_forward ||
        spec.scope == Scope::native_backward || spec.scope == Scope::loss_native ||
        spec.scope == Scope::loss_native_backward;
    if (native_only && !(round && options.bf16_compute == Bf16Compute::native)) continue;
    const std::int64_t rows = spec.rows == Rows::tokens ? T
                              : spec.rows == Rows::loss_chunk
                                  ? std::min(lm_head_chunk_rows(options.loss_chunk), T)
                                  : 1;
    const std::int64_t copies = spec.scope == Scope::stored_layer  ? (options.checkpointing ? 1 : L)
                                : spec.scope == Scope::layer_input ? L + 1
                                                                   : 1;
    const bool backward = spec.scope == Scope::backward || spec.scope == Scope::recompute ||
                          spec.scope == Scope::loss_backward ||
                          spec.scope == Scope::native_backward ||
                          spec.scope == Scope::loss_native_backward;
    out.push_back({spec.name, spec.shape, copies, rows * width_of(spec, config, params), backward,
                   spec.element_bytes});
  }
  return out;
}

std::int64_t LlamaTrainModel::activation_bytes(std::int64_t T) const {
  std::int64_t bytes = 0;
  for (const StepBuffer& b : step_buffers(T))
    bytes += b.bytes();
  return bytes;
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
  if (const auto window = config_.attention_window()) {
    const auto& layout = b.plan->layout();
    for (int s = 0; s < layout.num_sequences(); ++s)
      if (layout.seq_len(s) > *window)
        fail(
            "batch: sequence {} has {} tokens, beyond the model's sliding_window {} (sliding "
            "windows are not implemented)",
            s, layout.seq_len(s), *window);
  }
}

void LlamaTrainModel::prepare_buffers(std::int64_t T, bool backward) {
  for (const BufferSpec& spec : buffer_specs()) {
    const std::size_t n = static_cast<std::size_t>(
        (spec.rows == Rows::tokens ? T : 1) *
        width_of(spec, config_, static_cast<std::int64_t>(params_.size())));
    switch (spec.scope) {
      case Scope::stored_layer:
        for (LayerActs& a : acts_)
          (a.*spec.layer).resize(n);
        break;
      case Scope::layer_input:
        for (std::vector<float>& x : inputs_)
          x.resize(n);
        break;
      case Scope::forward:
        (this->*spec.member).resize(n);
        break;
      case Scope::backward:
        if (backward) (this->*spec.member).resize(n);
        break;
      case Scope::recompute:
        if (backward && options_.checkpointing) (this->*spec.member).resize(n);
        break;
      case Scope::bf16_weights:
        if (round_) (this->*spec.member).resize(n);
        break;
      case Scope::native_weights:
      case Scope::native_forward:
        if (compute_ == Bf16Compute::native) (this->*spec.bits).resize(n);
        break;
      case Scope::native_backward:
        if (backward && compute_ == Bf16Compute::native) (this->*spec.bits).resize(n);
        break;
      case Scope::rope:
      case Scope::loss:
      case Scope::loss_backward:
      case Scope::loss_native:
      case Scope::loss_native_backward:
        break;  // allocated by the rope part and the LM-head layer
    }
  }
  tokens_ = T;
}

// ---------------------------------------------------------------------------------------------
// Attention: RoPE'd q, k and v through the block-sparse kernels in the precision's dtype.

// Native bf16 attention's inputs as bf16 bits: q, k and v (and, for a backward, the forward's
// output and d_o) converted into attn_bits_ ([T, qd] | [T, kvd] | [T, kvd] | [T, qd]) and the
// first [T, qd] of attn_grad_bits_ past the gradients' [T, qd + 2 kvd].
LlamaTrainModel::AttentionBits LlamaTrainModel::attention_bits(const LayerActs& a,
                                                               const float* d_o) {
  AttentionBits b;
  b.q = attn_bits_.data();
  b.k = b.q + a.q.size();
  b.v = b.k + a.k.size();
  b.o = b.v + a.v.size();
  detail::float_to_bf16(a.q.data(), static_cast<std::int64_t>(a.q.size()), b.q);
  detail::float_to_bf16(a.k.data(), static_cast<std::int64_t>(a.k.size()), b.k);
  detail::float_to_bf16(a.v.data(), static_cast<std::int64_t>(a.v.size()), b.v);
  if (d_o != nullptr) {
    detail::float_to_bf16(a.o.data(), static_cast<std::int64_t>(a.o.size()), b.o);
    b.d_o = attn_grad_bits_.data() + a.q.size() + 2 * a.k.size();
    detail::float_to_bf16(d_o, static_cast<std::int64_t>(a.o.size()), b.d_o);
  }
  return b;
}

void LlamaTrainModel::attention_forward(LayerActs& a) {
  const OpScope scope(Op::attention_forward);
  const attention::KernelOptions kopt{0.0f, options_.threads};
  if (sp_group_) {
    // Ulysses: this rank's heads for the whole window, the kernel, the output back to tokens.
    const SequenceShards& s = exchange_->shards();
    const int hq = static_cast<int>(config_.num_attention_heads);
    const int hkv = static_cast<int>(config_.num_key_value_heads);
    exchange_->to_heads(a.q.data(), hq, s.q_heads, a.qh.data());
    exchange_->to_heads(a.k.data(), hkv, s.kv_heads, a.kh.data());
    exchange_->to_heads(a.v.data(), hkv, s.kv_heads, a.vh.data());
    if (s.local_q_heads() > 0)
      attention::forward(
          *batch_->plan, {s.local_q_heads(), s.local_kv_heads(), static_cast<int>(head_dim_)},
          {core::DType::f32, a.qh.data(), a.kh.data(), a.vh.data(), a.oh.data(), a.lse.data()},
          kopt);
    exchange_->to_tokens(a.oh.data(), hq, s.q_heads, false, a.o.data());
    if (round_) round_to_bf16(a.o);
    return;
  }
  const attention::AttentionDims dims{static_cast<int>(config_.num_attention_heads),
                                      static_cast<int>(config_.num_key_value_heads),
                                      static_cast<int>(head_dim_)};
  if (compute_ == Bf16Compute::native) {
    // Native bf16: the kernels' products on bf16 operands (AMX or vdpbf16ps) with float32
    // sums, P rounded to bf16 before PV. q, k and v hold bf16 values in hf_bf16 (converting
    // them is exact); exact RoPE's float32 q and k are rounded to bf16 here, once, as a bf16
    // training framework casts them for its attention kernel.
    const AttentionBits in = attention_bits(a, nullptr);
    attention::forward(*batch_->plan, dims,
                       {core::DType::bf16, in.q, in.k, in.v, in.o, a.lse.data()},
                       {0.0f, options_.threads, true});
    from_bf16_bits({in.o, a.o.size()}, a.o);
    return;
  }
  // Emulated (and fp32): the float32 kernel. In bf16 the inputs hold bf16 values (hf_bf16) or
  // float32 rotated q/k with bf16 v (exact); the kernel's emulated bf16 path would widen the
  // same values to float32 and round the output once, which is what rounding `o` here does,
  // without the conversions (5% of a step).
  attention::forward(
      *batch_->plan, dims,
      {core::DType::f32, a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data()}, kopt);
  if (round_) round_to_bf16(a.o);
}

void LlamaTrainModel::attention_backward(LayerActs& a, const float* d_o, float* dq, float* dk,
                                         float* dv) {
  const OpScope scope(Op::attention_backward);
  const attention::AttentionDims dims{static_cast<int>(config_.num_attention_heads),
                                      static_cast<int>(config_.num_key_value_heads),
                                      static_cast<int>(head_dim_)};
  const attention::KernelOptions kopt{0.0f, options_.threads};
  if (sp_group_) {
    // The mirror of the forward: d_o to heads, the kernel, dq/dk/dv back to tokens (a kv head
    // held by several ranks gets the sum of their gradients, in rank order).
    const SequenceShards& s = exchange_->shards();
    const int hq = static_cast<int>(config_.num_attention_heads);
    const int hkv = static_cast<int>(config_.num_key_value_heads);
    exchange_->to_heads(d_o, hq, s.q_heads, d_oh_.data());
    if (s.local_q_heads() > 0)
      attention::backward(*batch_->plan,
                          {s.local_q_heads(), s.local_kv_heads(), static_cast<int>(head_dim_)},
                          {core::DType::f32, a.qh.data(), a.kh.data(), a.vh.data(), a.oh.data(),
                           d_oh_.data(), a.lse.data(), dqh_.data(), dkh_.data(), dvh_.data()},
                          kopt);
    exchange_->to_tokens(dqh_.data(), hq, s.q_heads, false, dq);
    exchange_->to_tokens(dkh_.data(), hkv, s.kv_heads, true, dk);
    exchange_->to_tokens(dvh_.data(), hkv, s.kv_heads, true, dv);
  } else if (compute_ == Bf16Compute::native) {
    // The forward's bf16 operands again (a.o holds the forward's bf16 output, so converting
    // it back is exact); d_o is rounded to bf16 here, dS inside the kernel.
    const AttentionBits in = attention_bits(a, d_o);
    std::uint16_t* dq16 = attn_grad_bits_.data();
    std::uint16_t* dk16 = dq16 + a.q.size();
    std::uint16_t* dv16 = dk16 + a.k.size();
    attention::backward(
        *batch_->plan, dims,
        {core::DType::bf16, in.q, in.k, in.v, in.o, in.d_o, a.lse.data(), dq16, dk16, dv16},
        {0.0f, options_.threads, true});
    from_bf16_bits({dq16, a.q.size()}, {dq, a.q.size()});
    from_bf16_bits({dk16, a.k.size()}, {dk, a.k.size()});
    from_bf16_bits({dv16, a.v.size()}, {dv, a.v.size()});
    return;  // bf16 values already
  } else {
    attention::backward(*batch_->plan, dims,
                        {core::DType::f32, a.q.data(), a.k.data(), a.v.data(), a.o.data(), d_o,
                         a.lse.data(), dq, dk, dv},
                        kopt);
  }
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
  const LayerTensors<const ParameterInfo*>& n = tensors_.layers[static_cast<std::size_t>(l)];
  const std::int64_t T = tokens_, H = config_.hidden_size, I = config_.intermediate_size;
  const auto w = [&](const ParameterInfo* p) { return p ? weight(*p) : nullptr; };
  const auto wb = [&](const ParameterInfo* p) { return weight_bits(p); };
  const double eps = config_.rms_norm_eps;

  // Attention block: x_mid = x_in + o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x_in).
  // (Native: each GEMM input converted to bf16 once, x_bits_, for the GEMMs that read it.)
  rmsnorm_forward(x_in, w(n.input_norm), T, H, eps, round_, a.xn1.data(), a.rstd1.data());
  const std::uint16_t* xn1_bits = to_bits(a.xn1.data(), H, x_bits_);
  linear_forward(a.xn1.data(), w(n.q_proj), w(n.q_bias), T, H, q_dim_, round_, a.q.data(), compute_,
                 {xn1_bits, wb(n.q_proj)});
  linear_forward(a.xn1.data(), w(n.k_proj), w(n.k_bias), T, H, kv_dim_, round_, a.k.data(),
                 compute_, {xn1_bits, wb(n.k_proj)});
  linear_forward(a.xn1.data(), w(n.v_proj), w(n.v_bias), T, H, kv_dim_, round_, a.v.data(),
                 compute_, {xn1_bits, wb(n.v_proj)});
  {
    const OpScope scope(Op::rope);
    rotation_.forward(a.q.data(), config_.num_attention_heads);
    rotation_.forward(a.k.data(), config_.num_key_value_heads);
  }
  if (hook_ && *hook_) (*hook_)(l, a.q, a.k);
  if (inputs_only_ && l == config_.num_hidden_layers - 1) return;
  attention_forward(a);
  linear_forward(a.o.data(), w(n.o_proj), w(n.o_bias), T, q_dim_, H, round_, x_out, compute_,
                 {to_bits(a.o.data(), q_dim_, x_bits_), wb(n.o_proj)});
  add_forward(x_in, x_out, T * H, round_, a.x_mid.data());

  // MLP block: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)), xn2 = rmsnorm(x_mid).
  rmsnorm_forward(a.x_mid.data(), w(n.post_attention_norm), T, H, eps, round_, a.xn2.data(),
                  a.rstd2.data());
  const std::uint16_t* xn2_bits = to_bits(a.xn2.data(), H, x_bits_);
  linear_forward(a.xn2.data(), w(n.gate_proj), w(n.gate_bias), T, H, I, round_, a.gate.data(),
                 compute_, {xn2_bits, wb(n.gate_proj)});
  linear_forward(a.xn2.data(), w(n.up_proj), w(n.up_bias), T, H, I, round_, a.up.data(), compute_,
                 {xn2_bits, wb(n.up_proj)});
  swiglu_forward(a.gate.data(), a.up.data(), T * I, round_, a.h.data());
  linear_forward(a.h.data(), w(n.down_proj), w(n.down_bias), T, I, H, round_, x_out, compute_,
                 {to_bits(a.h.data(), I, x_bits_), wb(n.down_proj)});
  add_forward(a.x_mid.data(), x_out, T * H, round_, x_out);
}

// dx [T, H]: in, the gradient of the layer's output; out, of its input. Weight gradients add up.
void LlamaTrainModel::layer_backward(int l, const float* x_in, LayerActs& a, float* dx) {
  const LayerTensors<const ParameterInfo*>& n = tensors_.layers[static_cast<std::size_t>(l)];
  const std::int64_t T = tokens_, H = config_.hidden_size, I = config_.intermediate_size;
  const auto w = [&](const ParameterInfo* p) { return p ? weight(*p) : nullptr; };
  const auto g = [&](const ParameterInfo* p) { return p ? grad(*p) : nullptr; };
  const auto wb = [&](const ParameterInfo* p) { return weight_bits(p); };
  const auto round = [&](std::vector<float>& v) {
    if (round_) round_to_bf16(v);
  };
  // Native: a GEMM operand read twice or more (dy by dx and dW, xn1 and xn2 by several dW) is
  // converted to bf16 once: inputs into x_bits_, output gradients into dy_bits_.

  // MLP block (the residual passes dx through unchanged).
  linear_backward(a.h.data(), w(n.down_proj), dx, T, I, H, false, dh_.data(), g(n.down_proj),
                  g(n.down_bias), compute_,
                  {to_bits(a.h.data(), I, x_bits_), wb(n.down_proj), to_bits(dx, H, dy_bits_)});
  round(dh_);
  swiglu_backward(a.gate.data(), a.up.data(), dh_.data(), T * I, dgate_.data(), dup_.data());
  round(dgate_);
  round(dup_);
  const std::uint16_t* xn2_bits = to_bits(a.xn2.data(), H, x_bits_);
  linear_backward(a.xn2.data(), w(n.gate_proj), dgate_.data(), T, H, I, false, dxn_.data(),
                  g(n.gate_proj), g(n.gate_bias), compute_,
                  {xn2_bits, wb(n.gate_proj), to_bits(dgate_.data(), I, dy_bits_)});
  linear_backward(a.xn2.data(), w(n.up_proj), dup_.data(), T, H, I, true, dxn_.data(), g(n.up_proj),
                  g(n.up_bias), compute_,
                  {xn2_bits, wb(n.up_proj), to_bits(dup_.data(), I, dy_bits_)});
  round(dxn_);
  rmsnorm_backward(a.x_mid.data(), w(n.post_attention_norm), a.rstd2.data(), dxn_.data(), T, H,
                   true, dx, g(n.post_attention_norm));
  if (round_) round_to_bf16({dx, static_cast<std::size_t>(T * H)});

  // Attention block.
  linear_backward(a.o.data(), w(n.o_proj), dx, T, q_dim_, H, false, d_o_.data(), g(n.o_proj),
                  g(n.o_bias), compute_,
                  {to_bits(a.o.data(), q_dim_, x_bits_), wb(n.o_proj), to_bits(dx, H, dy_bits_)});
  round(d_o_);
  attention_backward(a, d_o_.data(), dq_.data(), dk_.data(), dv_.data());
  {
    const OpScope scope(Op::rope);
    rotation_.backward(dq_.data(), config_.num_attention_heads);
    rotation_.backward(dk_.data(), config_.num_key_value_heads);
  }
  const std::uint16_t* xn1_bits = to_bits(a.xn1.data(), H, x_bits_);
  linear_backward(a.xn1.data(), w(n.q_proj), dq_.data(), T, H, q_dim_, false, dxn_.data(),
                  g(n.q_proj), g(n.q_bias), compute_,
                  {xn1_bits, wb(n.q_proj), to_bits(dq_.data(), q_dim_, dy_bits_)});
  linear_backward(a.xn1.data(), w(n.k_proj), dk_.data(), T, H, kv_dim_, true, dxn_.data(),
                  g(n.k_proj), g(n.k_bias), compute_,
                  {xn1_bits, wb(n.k_proj), to_bits(dk_.data(), kv_dim_, dy_bits_)});
  linear_backward(a.xn1.data(), w(n.v_proj), dv_.data(), T, H, kv_dim_, true, dxn_.data(),
                  g(n.v_proj), g(n.v_bias), compute_,
                  {xn1_bits, wb(n.v_proj), to_bits(dv_.data(), kv_dim_, dy_bits_)});
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
  const auto [begin, end] = token_shard(static_cast<std::int64_t>(batch.input_ids.size()));
  if (!logits.empty() && logits.size() != static_cast<std::size_t>(end - begin) *
                                              static_cast<std::size_t>(config_.vocab_size))
    fail("forward: logits holds {} floats, expected {} x {}", logits.size(), end - begin,
         config_.vocab_size);
  return run(batch, false, 0.0, logits);
}

void LlamaTrainModel::attention_inputs(const TrainBatch& batch, const AttentionInputsHook& hook) {
  hook_ = &hook;
  inputs_only_ = true;
  struct Reset {
    LlamaTrainModel& m;
    ~Reset() {
      m.hook_ = nullptr;
      m.inputs_only_ = false;
    }
  } reset{*this};
  run(batch, false, 0.0, {});
}

LossSum LlamaTrainModel::run(const TrainBatch& batch, bool backward, double loss_scale,
                             std::span<float> logits) {
  check_batch(batch);
  // T: the tokens this rank computes, [t0, t0 + T) of the window (all of it without sequence
  // parallelism).
  const std::int64_t window = static_cast<std::int64_t>(batch.input_ids.size());
  // Plain variables, not a structured binding: the lambda below captures t0 (clang 14, which
  // builds the fuzz targets, cannot capture bindings).
  const std::pair<std::int64_t, std::int64_t> range = token_shard(window);
  const std::int64_t t0 = range.first;
  const std::int64_t T = range.second - range.first;
  const std::int64_t H = config_.hidden_size, V = config_.vocab_size;
  const std::int64_t L = config_.num_hidden_layers;
  const auto shard = [&](std::span<const std::int32_t> v) {
    return v.subspan(static_cast<std::size_t>(t0), static_cast<std::size_t>(T));
  };
  batch_ = &batch;
  prepare_buffers(T, backward);
  if (sp_group_) prepare_exchange(window, backward);
  if (round_) {
    const OpScope scope(Op::weights_bf16);
    std::copy(params_.begin(), params_.end(), bf16_params_.begin());
    round_to_bf16(bf16_params_);
    // Once per forward, not per GEMM: a weight is read by two GEMMs a step (three with
    // checkpointing), the LM head's by three per loss chunk.
    if (compute_ == Bf16Compute::native)
      detail::float_to_bf16(params_.data(), static_cast<std::int64_t>(params_.size()),
                            weight_bits_.data());
  }

  // RoPE tables for this batch's positions (dynamic scaling looks at the longest position: the
  // window's, on every rank).
  std::int32_t max_pos = 0;
  for (const std::int32_t p : batch.position_ids) {
    if (p < 0) fail("batch: negative position id {}", p);
    max_pos = std::max(max_pos, p);
  }
  frequencies_ = rope::compute_frequencies(
      {head_dim_, config_.rope_theta, config_.rope_scaling, config_.max_position_embeddings},
      static_cast<std::int64_t>(max_pos) + 1);
  rotation_ = rope::RotationTable(frequencies_, shard(batch.position_ids), options_.rope_mode);

  embedding_forward(shard(batch.input_ids), weight(*tensors_.embed_tokens), V, H,
                    inputs_[0].data());
  for (std::int64_t l = 0; l < L; ++l) {
    LayerActs& a = acts_[options_.checkpointing ? 0 : static_cast<std::size_t>(l)];
    layer_forward(static_cast<int>(l), inputs_[l].data(), inputs_[l + 1].data(), a);
  }
  if (inputs_only_) return {};
  rmsnorm_forward(inputs_[L].data(), weight(*tensors_.final_norm), T, H, config_.rms_norm_eps,
                  round_, final_out_.data(), final_rstd_.data());
  if (!backward)
    return lm_head_cross_entropy(final_out_.data(), weight(*lm_head_), shard(batch.targets), H, V,
                                 options_.loss_chunk, round_, 0.0, nullptr, nullptr,
                                 logits.empty() ? nullptr : logits.data(), compute_,
                                 weight_bits(lm_head_));

  // LM head + loss, then the final norm: dx_ = d(hidden after the last layer).
  const LossSum loss = lm_head_cross_entropy(
      final_out_.data(), weight(*lm_head_), shard(batch.targets), H, V, options_.loss_chunk, round_,
      loss_scale, dxn_.data(), grad(*lm_head_), nullptr, compute_, weight_bits(lm_head_));
  if (round_) round_to_bf16(dxn_);
  rmsnorm_backward(inputs_[L].data(), weight(*tensors_.final_norm), final_rstd_.data(), dxn_.data(),
                   T, H, false, dx_.data(), grad(*tensors_.final_norm));
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
  embedding_backward(shard(batch.input_ids), dx_.data(), H, grad(*tensors_.embed_tokens));
  return loss;
}

}  // namespace anchorctx::model
