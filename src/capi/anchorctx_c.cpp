// The C API (include/anchorctx/anchorctx.h) over anchorctx::attention: validates every raw
// pointer and enum it is given, builds the layout and block plan (a handle the caller keeps, or
// one per call for the older entry points), runs the kernel, and turns every exception into a
// status and a message -- nothing may unwind into a C caller.
#include "anchorctx/anchorctx.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/attention/kernels.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/version.h"

namespace {

using anchorctx::fail;
using anchorctx::require;
namespace attn = anchorctx::attention;

// The header's limits are the library's (one value each, stated in C for C callers).
static_assert(ANCHORCTX_MAX_THREADS == anchorctx::core::kMaxThreads);
static_assert(ANCHORCTX_MAX_TILE_SIZE == attn::BlockPlan::kMaxTileSize);

// Copies `message` into the caller's buffer, truncated and always NUL-terminated.
void write_error(char* error, size_t error_len, const char* message) noexcept {
  if (error == nullptr || error_len == 0) return;
  const size_t n = std::min(std::strlen(message), error_len - 1);
  std::memcpy(error, message, n);
  error[n] = '\0';
}

// Runs `body`, mapping exceptions to statuses. Invalid input is reported by anchorctx::Error
// (ours and the library's validation); anything else is out of memory or a bug.
template <typename Body>
anchorctx_status guarded(const char* function, char* error, size_t error_len,
                         Body&& body) noexcept {
  try {
    body();
    write_error(error, error_len, "");
    return ANCHORCTX_OK;
  } catch (const anchorctx::Error& e) {
    write_error(error, error_len, (std::string(function) + ": " + e.what()).c_str());
    return ANCHORCTX_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    write_error(error, error_len, (std::string(function) + ": out of memory").c_str());
    return ANCHORCTX_INTERNAL_ERROR;
  } catch (const std::exception& e) {
    try {
      write_error(error, error_len,
                  (std::string(function) + ": internal error: " + e.what()).c_str());
    } catch (...) {
      write_error(error, error_len, "internal error");
    }
    return ANCHORCTX_INTERNAL_ERROR;
  } catch (...) {
    write_error(error, error_len, "internal error: unknown exception");
    return ANCHORCTX_INTERNAL_ERROR;
  }
}

attn::MaskKind to_mask(anchorctx_mask mask) {
  switch (static_cast<int>(mask)) {
    case ANCHORCTX_MASK_CAUSAL:
      return attn::MaskKind::causal;
    case ANCHORCTX_MASK_INTRA_DOC:
      return attn::MaskKind::intra_doc;
    case ANCHORCTX_MASK_ANCHOR:
      return attn::MaskKind::anchor;
  }
  fail("mask {} is not one of ANCHORCTX_MASK_CAUSAL (0), _INTRA_DOC (1), _ANCHOR (2)",
       static_cast<int>(mask));
}

anchorctx::core::DType to_dtype(anchorctx_dtype dtype) {
  switch (static_cast<int>(dtype)) {
    case ANCHORCTX_F32:
      return anchorctx::core::DType::f32;
    case ANCHORCTX_BF16:
      return anchorctx::core::DType::bf16;
  }
  fail("dtype {} is not one of ANCHORCTX_F32 (0), ANCHORCTX_BF16 (1)", static_cast<int>(dtype));
}

// The layout arrays are read only after the pointers and the lengths they imply are checked:
// cu_seqlens, cu_docs (or NULL: one document each) and cu_seqlens_q (or NULL: the keys) hold
// B+1 entries, doc_starts cu_docs[B], anchor_lens B (or NULL).
attn::AttentionLayout to_layout(const anchorctx_layout* layout, const int32_t* cu_seqlens_q) {
  require(layout != nullptr, "layout is NULL");
  const int32_t b = layout->num_sequences;
  require(b >= 0, "layout.num_sequences {} is negative", b);
  require(layout->cu_seqlens != nullptr, "layout.cu_seqlens is NULL");
  const size_t nb = static_cast<size_t>(b);
  const std::vector<int32_t> no_docs(layout->cu_docs == nullptr ? nb + 1 : 0, 0);
  const int32_t* cu_docs = layout->cu_docs != nullptr ? layout->cu_docs : no_docs.data();
  const int32_t num_docs = cu_docs[nb];
  require(num_docs >= 0, "layout.cu_docs[{}] = {} is negative", b, num_docs);
  require(num_docs == 0 || layout->doc_starts != nullptr,
          "layout.doc_starts is NULL but cu_docs[{}] = {} document starts", b, num_docs);
  const std::span<const int32_t> doc_starts =
      num_docs == 0 ? std::span<const int32_t>{}
                    : std::span<const int32_t>(layout->doc_starts, static_cast<size_t>(num_docs));
  const std::span<const int32_t> anchor_lens =
      layout->anchor_lens == nullptr ? std::span<const int32_t>{}
                                     : std::span<const int32_t>(layout->anchor_lens, nb);
  const std::span<const int32_t> cu_seqlens(layout->cu_seqlens, nb + 1);
  if (cu_seqlens_q == nullptr) {
    return attn::AttentionLayout::from_arrays(cu_seqlens, std::span<const int32_t>(cu_docs, nb + 1),
                                              doc_starts, anchor_lens);
  }
  return attn::AttentionLayout::from_arrays(std::span<const int32_t>(cu_seqlens_q, nb + 1),
                                            cu_seqlens, std::span<const int32_t>(cu_docs, nb + 1),
                                            doc_starts, anchor_lens);
}

attn::Mask to_mask(const anchorctx_mask_spec* spec) {
  require(spec != nullptr, "mask is NULL");
  require(spec->window >= 0, "mask.window {} is negative (0: unlimited)", spec->window);
  return {to_mask(spec->mask), spec->window, spec->non_causal == 0};
}

// {token, head} pairs, NULL: all dense.
attn::Strides strides_at(const int64_t* strides, int i) {
  if (strides == nullptr) return {};
  return {strides[2 * i], strides[2 * i + 1]};
}

struct Params {
  attn::AttentionDims dims;
  attn::KernelOptions options;
};

Params to_params(const anchorctx_attention_params* params) {
  require(params != nullptr, "params is NULL");
  require(params->heads_q > 0 && params->heads_kv > 0,
          "params: heads_q ({}) and heads_kv ({}) must be positive", params->heads_q,
          params->heads_kv);
  require(params->heads_q % params->heads_kv == 0,
          "params: heads_q ({}) must be a multiple of heads_kv ({}) for grouped-query attention",
          params->heads_q, params->heads_kv);
  require(params->head_dim > 0 && params->head_dim % 8 == 0 && params->head_dim <= 256,
          "params: head_dim {} must be a positive multiple of 8, at most 256", params->head_dim);
  require(std::isfinite(params->scale) && params->scale >= 0.0f,
          "params: scale {} must be finite and >= 0 (0: 1/sqrt(head_dim))", params->scale);
  anchorctx::core::check_threads(params->threads, "params: threads");
  Params p;
  p.dims.heads_q = params->heads_q;
  p.dims.heads_kv = params->heads_kv;
  p.dims.head_dim = params->head_dim;
  p.options.scale = params->scale;
  p.options.threads = params->threads;
  return p;
}

}  // namespace

// The handle is the C++ plan itself.
struct anchorctx_plan {
  attn::BlockPlan plan;
};

extern "C" {

anchorctx_status anchorctx_attention_forward(const anchorctx_layout* layout, anchorctx_mask mask,
                                             anchorctx_dtype dtype,
                                             const anchorctx_attention_params* params,
                                             const void* q, const void* k, const void* v, void* out,
                                             float* lse, char* error, size_t error_len) {
  return guarded("anchorctx_attention_forward", error, error_len, [&] {
    const attn::MaskKind mask_kind = to_mask(mask);
    const attn::ForwardTensors t{to_dtype(dtype), q, k, v, out, lse};
    const Params p = to_params(params);
    const attn::BlockPlan plan = attn::BlockPlan::build(to_layout(layout, nullptr), mask_kind);
    attn::forward(plan, p.dims, t, p.options);  // checks the tensors: null ones are named
  });
}

anchorctx_status anchorctx_attention_backward(const anchorctx_layout* layout, anchorctx_mask mask,
                                              anchorctx_dtype dtype,
                                              const anchorctx_attention_params* params,
                                              const void* q, const void* k, const void* v,
                                              const void* out, const void* dout, const float* lse,
                                              void* dq, void* dk, void* dv, char* error,
                                              size_t error_len) {
  return guarded("anchorctx_attention_backward", error, error_len, [&] {
    const attn::MaskKind mask_kind = to_mask(mask);
    const attn::BackwardTensors t{to_dtype(dtype), q, k, v, out, dout, lse, dq, dk, dv};
    const Params p = to_params(params);
    const attn::BlockPlan plan = attn::BlockPlan::build(to_layout(layout, nullptr), mask_kind);
    attn::backward(plan, p.dims, t, p.options);  // checks the tensors: null ones are named
  });
}

anchorctx_status anchorctx_plan_create(const anchorctx_layout* layout, const int32_t* cu_seqlens_q,
                                       const anchorctx_mask_spec* mask, int32_t tile_size,
                                       anchorctx_plan** plan, char* error, size_t error_len) {
  if (plan != nullptr) *plan = nullptr;
  return guarded("anchorctx_plan_create", error, error_len, [&] {
    require(plan != nullptr, "plan (the pointer to write the handle to) is NULL");
    require(tile_size >= 0 && tile_size <= ANCHORCTX_MAX_TILE_SIZE,
            "tile_size {} is out of range: 0 (the default) to {}", tile_size,
            ANCHORCTX_MAX_TILE_SIZE);
    const attn::Mask m = to_mask(mask);
    *plan = new anchorctx_plan{
        attn::BlockPlan::build(to_layout(layout, cu_seqlens_q), m,
                               tile_size == 0 ? attn::BlockPlan::kDefaultTileSize : tile_size)};
  });
}

void anchorctx_plan_destroy(anchorctx_plan* plan) {
  delete plan;
}

int64_t anchorctx_plan_query_tokens(const anchorctx_plan* plan) {
  return plan == nullptr ? -1 : plan->plan.layout().total_q_tokens();
}

int64_t anchorctx_plan_key_tokens(const anchorctx_plan* plan) {
  return plan == nullptr ? -1 : plan->plan.layout().total_tokens();
}

anchorctx_status anchorctx_attention_forward_plan(const anchorctx_plan* plan, anchorctx_dtype dtype,
                                                  const anchorctx_attention_params* params,
                                                  const void* q, const void* k, const void* v,
                                                  void* out, float* lse, const int64_t* strides,
                                                  char* error, size_t error_len) {
  return guarded("anchorctx_attention_forward_plan", error, error_len, [&] {
    require(plan != nullptr, "plan is NULL");
    const attn::ForwardTensors t{to_dtype(dtype), q, k, v, out, lse};
    const Params p = to_params(params);
    const attn::ForwardStrides s{strides_at(strides, 0), strides_at(strides, 1),
                                 strides_at(strides, 2), strides_at(strides, 3)};
    attn::forward(plan->plan, p.dims, t, p.options, s);  // checks tensors and strides by name
  });
}

anchorctx_status anchorctx_attention_backward_plan(
    const anchorctx_plan* plan, anchorctx_dtype dtype, const anchorctx_attention_params* params,
    const void* q, const void* k, const void* v, const void* out, const void* dout,
    const float* lse, void* dq, void* dk, void* dv, const int64_t* strides, char* error,
    size_t error_len) {
  return guarded("anchorctx_attention_backward_plan", error, error_len, [&] {
    require(plan != nullptr, "plan is NULL");
    const attn::BackwardTensors t{to_dtype(dtype), q, k, v, out, dout, lse, dq, dk, dv};
    const Params p = to_params(params);
    const attn::BackwardStrides s{strides_at(strides, 0), strides_at(strides, 1),
                                  strides_at(strides, 2), strides_at(strides, 3),
                                  strides_at(strides, 4), strides_at(strides, 5),
                                  strides_at(strides, 6), strides_at(strides, 7)};
    attn::backward(plan->plan, p.dims, t, p.options, s);
  });
}

const char* anchorctx_version(void) {
  return anchorctx::kVersion;
}

}  // extern "C"
