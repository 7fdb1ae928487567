// LlamaTrainModel: the training forward and backward of a Llama-family model over a packed
// batch, through the block-sparse attention kernels, in float32 or emulated bf16.
//
// Read top to bottom in llama_train.cpp: embedding, per layer (RMSNorm, q/k/v, RoPE, attention,
// o, residual, RMSNorm, gate/up, SwiGLU, down, residual), final norm, LM head + cross-entropy;
// the backward is the same list reversed. Weights live in one flat buffer (ParameterLayout),
// gradients in another of the same layout.
//
// Precision (docs/PRECISION.md lists every rounding point):
//   fp32  everything in float32.
//   bf16  PyTorch bf16 training with float32 master weights: the weights are rounded to bf16 at
//         the start of each forward; activations are rounded to bf16 where a transformers model
//         in torch.bfloat16 rounds (op outputs); GEMMs multiply bf16 values and accumulate in
//         float32 (exact emulation through sgemm, or bf16 operands through oneDNN with
//         RunOptions::bf16_compute native); RoPE per RopeMode (hf_bf16 or exact);
//         activation gradients are rounded to bf16 at the same boundaries; weight gradients
//         accumulate in float32.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/enum_names.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/sequence_parallel.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::model {

enum class Precision { fp32, bf16 };
inline constexpr core::EnumName<Precision> kPrecisionNames[] = {{Precision::fp32, "fp32"},
                                                                {Precision::bf16, "bf16"}};
constexpr std::span<const core::EnumName<Precision>> enum_names(Precision) {
  return kPrecisionNames;
}
std::string_view to_string(Precision precision);
std::optional<Precision> parse_precision(std::string_view name);

struct RunOptions {
  Precision precision = Precision::fp32;
  // fp32 precision takes rope fp32; bf16 takes hf_bf16 (the HF behaviour) or exact. Other
  // pairs are refused by the constructor.
  rope::RopeMode rope_mode = rope::RopeMode::fp32;
  // Keep only each layer's input between forward and backward and recompute the layer in the
  // backward (activation memory O(layers * T * H) instead of O(layers * T * (H + 3 I ...))).
  bool checkpointing = false;
  std::int64_t loss_chunk = 1024;  // tokens per LM-head/cross-entropy chunk
  int threads = 0;                 // attention kernel threads (0: OpenMP's default)
  // bf16 precision: the layers' GEMMs (projections, MLP, LM head) emulated through sgemm (the
  // reference) or native bf16 through oneDNN (bf16_compute.h). No effect in fp32. The
  // constructor refuses native where it is unavailable.
  Bf16Compute bf16_compute = Bf16Compute::emulated;
};

// The default rope mode of a precision (fp32 -> fp32, bf16 -> hf_bf16).
rope::RopeMode default_rope_mode(Precision precision);

// One packed batch: T tokens of B sequences (the plan's layout says where they are).
struct TrainBatch {
  std::span<const std::int32_t> input_ids;     // [T]
  std::span<const std::int32_t> targets;       // [T]; -1 = no loss at this position
  std::span<const std::int32_t> position_ids;  // [T]
  const attention::BlockPlan* plan = nullptr;  // built from the batch's layout and mask
};

// One buffer of a training step (see LlamaTrainModel::step_buffers).
struct StepBuffer {
  std::string_view name;      // the buffer in llama_train.cpp (layer.q: LayerActs::q)
  std::string_view shape;     // of one copy, in docs/TRAINING.md's letters ("[T, qd]")
  std::int64_t copies = 1;    // L (each stored layer), L + 1 (the layer inputs) or 1
  std::int64_t elements = 0;  // elements of one copy
  bool backward = false;      // allocated only when a backward runs
  int element_bytes = 4;      // float32, or 2 for the native path's bf16 bits
  std::int64_t bytes() const { return element_bytes * copies * elements; }
};

class LlamaTrainModel {
 public:
  // Parameters zeroed (call init_parameters or load into params()). Throws anchorctx::Error
  // for a config this model does not run (sliding windows are refused per batch, a head_dim
  // the kernels do not take) or a bad precision/rope pair.
  LlamaTrainModel(LlamaConfig config, RunOptions options);
  ~LlamaTrainModel();
  LlamaTrainModel(const LlamaTrainModel&) = delete;
  LlamaTrainModel& operator=(const LlamaTrainModel&) = delete;

  const LlamaConfig& config() const { return config_; }
  const RunOptions& options() const { return options_; }
  const ParameterLayout& layout() const { return layout_; }
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  void zero_grads();

  // Ulysses sequence parallelism over `group` (sequence_parallel.h; nullptr or a group of one:
  // off). Every rank of the group then passes the same whole-window batch; each computes its
  // token shard (token_shard) and returns that shard's loss sum and target count, its grads
  // hold that shard's contribution (the caller sums both over the group: rank order). A
  // forward's logits are the shard's, [shard tokens, V]. Collective: the group's ranks call
  // forward/forward_backward together. The group must outlive the model's use of it.
  void set_sequence_parallel(dist::Communicator* group);
  // [begin, end) of a window of `window_tokens` tokens that this rank computes.
  std::pair<std::int64_t, std::int64_t> token_shard(std::int64_t window_tokens) const;

  // Forward, then backward of loss_scale * (summed cross-entropy): grads += its gradient.
  // Returns the summed loss and the targeted-token count. Throws anchorctx::Error on a bad
  // batch (sizes, ids, positions beyond a sliding window).
  LossSum forward_backward(const TrainBatch& batch, double loss_scale);
  // Forward only; `logits` [T, V] filled when non-empty.
  LossSum forward(const TrainBatch& batch, std::span<float> logits = {});

  // Sees each layer's attention inputs: q [T, Hq*D] and k [T, Hkv*D] after RoPE (as they
  // enter the attention kernel: bf16 values in hf_bf16 mode, float32 in exact and fp32), valid
  // during the call; with sequence parallelism, this rank's token shard. For diagnostics
  // (analysis/rope-drift).
  using AttentionInputsHook =
      std::function<void(int layer, std::span<const float> q, std::span<const float> k)>;
  // The forward as far as the attention inputs go: every layer's q and k to `hook`, in layer
  // order, and nothing after the last layer's (its attention and MLP, the final norm and the
  // LM head are skipped). Collective with sequence parallelism, as forward.
  void attention_inputs(const TrainBatch& batch, const AttentionInputsHook& hook);

  // Every buffer a batch of `tokens` tokens allocates beyond the weights and gradients, as
  // llm.c lists its activation sizes: the model's buffers are allocated from this list, the
  // estimate below sums it, and docs/TRAINING.md's table is it (tests/model/train_memory_test.cpp
  // checks all three).
  // Without sequence parallelism: with it, `tokens` is the shard's, and the window-length
  // buffers of this rank's heads (LayerActs qh, kh, vh, oh per stored layer; d_oh_, dqh_,
  // dkh_, dvh_) come on top and are not listed yet.
  std::vector<StepBuffer> step_buffers(std::int64_t tokens) const;
  // The same list for a model of `config` run with `options`, without building one (nothing is
  // allocated): the cost model (train/cost_model.h) sums it for models too big for this machine.
  static std::vector<StepBuffer> step_buffers(const LlamaConfig& config, const RunOptions& options,
                                              std::int64_t tokens);
  // The bytes of step_buffers(tokens): what forward_backward holds after its first call on a
  // batch of `tokens` tokens (the loss chunk when at least min(loss_chunk, tokens) tokens are
  // targeted). A forward-only call holds the buffers not marked `backward`.
  std::int64_t activation_bytes(std::int64_t tokens) const;

 private:
  struct LayerActs;
  struct BufferSpec;
  static std::span<const BufferSpec> buffer_specs();
  static std::int64_t width_of(const BufferSpec& spec, const LlamaConfig& config,
                               std::int64_t params);
  LossSum run(const TrainBatch& batch, bool backward, double loss_scale, std::span<float> logits);
  void check_batch(const TrainBatch& batch) const;
  void prepare_buffers(std::int64_t tokens, bool backward);
  void layer_forward(int l, const float* x_in, float* x_out, LayerActs& acts);
  void layer_backward(int l, const float* x_in, LayerActs& acts, float* dx);
  struct AttentionBits {
    std::uint16_t *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *d_o = nullptr;
  };
  AttentionBits attention_bits(const LayerActs& acts, const float* d_o);
  void attention_forward(LayerActs& acts);
  void attention_backward(LayerActs& acts, const float* d_o, float* dq, float* dk, float* dv);
  const float* weight(const ParameterInfo& info) const;
  // Native: the bf16 bits of a weight (null for an absent one) / of a [T, width] activation,
  // converted into `bits`; null when the GEMMs are emulated.
  const std::uint16_t* weight_bits(const ParameterInfo* info) const;
  const std::uint16_t* to_bits(const float* src, std::int64_t width,
                               std::vector<std::uint16_t>& bits);
  float* grad(const ParameterInfo& info) { return grads_.data() + info.offset; }

  // Sequence parallel (set_sequence_parallel): the group, and its exchange for the current
  // window length.
  dist::Communicator* sp_group_ = nullptr;
  std::unique_ptr<UlyssesExchange> exchange_;
  void prepare_exchange(std::int64_t window_tokens, bool backward);

  LlamaConfig config_;
  RunOptions options_;
  ParameterLayout layout_;
  std::vector<float> params_, grads_;
  std::vector<float> bf16_params_;  // the bf16 copy of params_ the bf16 forward reads
  // Native bf16 GEMMs: the weights as bf16 bits (made with bf16_params_, once per forward), and
  // an activation (x_bits_) and an output gradient (dy_bits_) converted once for the GEMMs
  // that read them; the native attention kernels' bf16 inputs and outputs, q | k | v | o
  // (attn_bits_) and dq | dk | dv | d_o (attn_grad_bits_), each [T, width] in turn.
  std::vector<std::uint16_t> weight_bits_, x_bits_, dy_bits_, attn_bits_, attn_grad_bits_;
  bool round_ = false;
  Bf16Compute compute_ = Bf16Compute::emulated;  // of the layer GEMMs (emulated in fp32)
  std::int64_t head_dim_ = 0, q_dim_ = 0, kv_dim_ = 0;

  ModelTensors<const ParameterInfo*> tensors_;  // layout_'s slices by slot
  const ParameterInfo* lm_head_ = nullptr;      // lm_head, or the embedding when tied

  // Per-batch state.
  const TrainBatch* batch_ = nullptr;
  const AttentionInputsHook* hook_ = nullptr;
  bool inputs_only_ = false;  // attention_inputs(): stop after the last layer's q and k
  rope::RopeFrequencies frequencies_;
  rope::RotationTable rotation_;
  std::int64_t tokens_ = 0;
  std::vector<LayerActs> acts_;             // one per layer, or one shared with checkpointing
  std::vector<std::vector<float>> inputs_;  // each layer's input (+ the final norm's)
  std::vector<float> final_rstd_, final_out_;
  // Backward scratch, shared by the layers: gradients of the hidden state (dx_), of the
  // attention output, q, k, v, a normed input, the MLP's h, gate and up; and the recomputed
  // layer output that checkpointing discards.
  std::vector<float> dx_, d_o_, dq_, dk_, dv_, dxn_, dh_, dgate_, dup_, recompute_out_;
  // Sequence parallel backward scratch: the attention gradients for the whole window and this
  // rank's heads (the forward's are in LayerActs: qh, kh, vh, oh).
  std::vector<float> d_oh_, dqh_, dkh_, dvh_;
};

}  // namespace anchorctx::model
