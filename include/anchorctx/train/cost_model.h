// The cost model of a distributed training step (`anchorctx plan`): FLOPs, memory, bytes on the
// wire and time per rank, for data parallel (DP = G / S replicas), Ulysses sequence parallel (S
// ranks share a window) and ZeRO-1 (optimizer moments sharded).
//
// It reuses the project's own definitions rather than formulas of its own where one exists:
// the attention work is counted on the BlockPlan of sampled windows (the visible pairs of
// mask.h and the tiles the kernels visit), and the activation memory is the training model's
// buffer list (LlamaTrainModel::step_buffers) at the rank's token count. Everything else is
// stated where it is computed (cost_model.cpp) and in docs/DISTRIBUTED_PLAN.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/data/doc_lengths.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/train/hardware.h"

namespace anchorctx::train {

// What is planned: a model, a window, and how G ranks split the work.
struct PlanSetup {
  model::LlamaConfig config;
  std::int64_t seq_len = 0;      // tokens per window (T)
  int gpus = 1;                  // G: ranks in all
  int sp = 1;                    // S: ranks sharing one window (Ulysses); DP = G / S
  int grad_accum = 1;            // windows each SP group runs per optimizer step
  bool shard_optimizer = false;  // ZeRO-1 over the G ranks the gradients are summed over
  bool checkpointing = false;    // per-layer activation checkpointing (recomputed forward)
  model::Precision precision = model::Precision::bf16;  // training precision (GEMM peak)
  // Element size on the wire: all-to-all activations, gradients, gathered parameters. This
  // project's MPI backend sends float32.
  model::Precision comm_precision = model::Precision::fp32;
  std::int64_t loss_chunk = 1024;  // LM-head chunk (step_buffers' loss scratch)

  int dp() const { return gpus / sp; }
};

// Refuses what cannot run, naming the numbers: G, S < 1; G not divisible by S; S above the
// attention heads or not dividing them (Ulysses gives each rank whole heads); kv heads that
// neither S divides nor divide S (the GQA rule: kv heads split evenly, or each replicated to
// S / kv heads ranks, as DeepSpeed-Ulysses does); a window shorter than S tokens.
void check_setup(const PlanSetup& setup);

// Attention work of one window under one mask, from the BlockPlan of the sampled windows.
struct AttentionWork {
  double visible_pairs = 0.0;   // (query, key) pairs the mask shows, per window
  double computed_pairs = 0.0;  // pairs inside the tiles the kernels visit, per window
  double causal_pairs = 0.0;    // T (T + 1) / 2, per window
  std::int64_t visited_tiles = 0, partial_tiles = 0;  // over all sampled windows
  int windows = 0, tile_size = 0;
};

// `windows`: the sampled windows as one packed layout (each sequence one window).
AttentionWork attention_work(const attention::AttentionLayout& windows, attention::Mask mask,
                             int tile_size);

// `count` windows of `seq_len` tokens: an anchor token, then documents drawn by `docs` (as
// `bench train` lays out its window), anchor length 1.
attention::AttentionLayout sample_windows(const data::DocLengthSpec& docs, int count,
                                          std::int32_t seq_len, std::uint64_t seed);

// Floating-point operations of one rank in one optimizer step.
struct PlanFlops {
  double matmul = 0.0;              // projections, MLP, LM head: 6 x matrix params x tokens
  double attention = 0.0;           // useful: 14 x visible pairs x D x heads on this rank
  double attention_computed = 0.0;  // the same over the visited tiles' pairs
  double recompute = 0.0;           // checkpointing's second forward (matmuls + attention tiles)
  double model() const { return matmul + attention; }  // what MFU counts
  double executed() const { return matmul + attention_computed + recompute; }
};

// Bytes one rank holds at the peak of a step.
struct PlanMemory {
  std::int64_t parameters = 0;       // float32 master weights (the flat buffer, padding included)
  std::int64_t gradients = 0;        // float32
  std::int64_t optimizer = 0;        // AdamW moments, float32, sharded by ZeRO-1
  std::int64_t step_buffers = 0;     // LlamaTrainModel::step_buffers(tokens on this rank)
  std::int64_t weight_copy = 0;      // of which the bf16 weight copy (float32 storage)
  std::int64_t ulysses_staging = 0;  // all-to-all send + receive of one layer (estimate)
  std::int64_t total() const {
    return parameters + gradients + optimizer + step_buffers + ulysses_staging;
  }
  // Activations held as bf16 (2 bytes) rather than this trainer's float32: a GPU framework's
  // layout, for comparison.
  std::int64_t total_bf16_activations() const {
    return total() - (step_buffers - weight_copy) / 2 - weight_copy / 2 - ulysses_staging / 2;
  }
};

// Bytes one rank sends in one optimizer step.
struct PlanCommunication {
  double a2a_forward_per_layer = 0.0;   // q, k, v to head shards, the output back
  double a2a_backward_per_layer = 0.0;  // their gradients
  double a2a_step = 0.0;                // every layer, every window, recompute included
  int kv_replication = 1;               // ranks each kv head is sent to (S / kv heads, or 1)
  int gradient_ranks = 1;               // the ranks gradients are summed over (G)
  double gradient_all_reduce = 0.0;     // ring: 2 (N - 1) / N x gradient bytes
  double zero_reduce_scatter = 0.0;     // (N - 1) / N x gradient bytes
  double zero_all_gather = 0.0;         // (N - 1) / N x parameter bytes
};

// Seconds of one optimizer step on one rank, nothing overlapped (the trainer's order: compute,
// all-to-all inside each layer, one gradient reduction after the last micro-batch, AdamW).
struct PlanTime {
  double matmul = 0.0, attention = 0.0, recompute = 0.0, all_to_all = 0.0, gradients = 0.0,
         optimizer = 0.0;
  double total() const {
    return matmul + attention + recompute + all_to_all + gradients + optimizer;
  }
};

struct PlanEstimate {
  std::int64_t tokens_per_rank = 0;  // the largest shard of a window (plan_sequence_shards)
  std::int64_t parameters = 0;       // model parameters (parameter_count)
  PlanFlops flops;
  PlanMemory memory;
  PlanCommunication communication;
  PlanTime time;
  double tokens_per_second = 0.0;  // the whole run's: G / S x grad_accum x T / step
  double mfu = 0.0;                // model FLOPs / (step x peak) per rank
  bool fits = false;               // memory.total() <= the device's memory
  std::vector<std::string> notes;  // limits met and assumptions that bind
};

// The estimate of `setup` on `hardware` with `work` (attention_work of the setup's mask).
// Calls check_setup first.
PlanEstimate estimate_plan(const PlanSetup& setup, const AttentionWork& work,
                           const HardwareProfile& hardware);

}  // namespace anchorctx::train
