/* anchorctx C API: the stable surface for other languages (Python ctypes, Rust, Julia, ...).
 *
 * Plain C, raw pointers, no exceptions: every function returns an anchorctx_status and, on
 * failure, writes a NUL-terminated message into `error` (when not NULL, at most `error_len`
 * bytes). On failure no output is written. Shapes and semantics are those of
 * include/anchorctx/attention/kernels.h:
 *   q, out, dout, dq [Tq, Hq, D]; k, v, dk, dv [Tk, Hkv, D]; lse [Hq, Tq] float32;
 *   bf16 tensors hold raw bfloat16 bits (uint16). Tq == Tk unless the plan was made with a
 *   separate query layout. A NaN or infinity in an input makes NaN exactly the outputs it
 *   reaches through the mask (kernels.h).
 *
 * Use: anchorctx_plan_create once per batch (layout + mask), then anchorctx_attention_forward_plan
 * / _backward_plan for every layer, and anchorctx_plan_destroy. The older
 * anchorctx_attention_forward / _backward build a plan on every call (same results).
 */
#ifndef ANCHORCTX_ANCHORCTX_H_
#define ANCHORCTX_ANCHORCTX_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest anchorctx_attention_params.threads and anchorctx_plan_create tile_size: a larger
 * value is refused with ANCHORCTX_INVALID_ARGUMENT (it would not fit in memory, or could end
 * the process inside OpenMP). */
#define ANCHORCTX_MAX_THREADS 4096
#define ANCHORCTX_MAX_TILE_SIZE 1024

typedef enum {
  ANCHORCTX_OK = 0,
  ANCHORCTX_INVALID_ARGUMENT = 1, /* bad layout, shape, pointer or enum */
  ANCHORCTX_INTERNAL_ERROR = 2    /* out of memory or a bug: the message says which */
} anchorctx_status;

/* The *_RANGE_MIN_/_MAX_ members are not values to pass: they make each enum span every int32, so
 * that a wrong number from a caller is a value the library refuses (ANCHORCTX_INVALID_ARGUMENT)
 * rather than, in C++, an enum holding a value outside its range (undefined behaviour). */
typedef enum {
  ANCHORCTX_F32 = 0,
  ANCHORCTX_BF16 = 1,
  ANCHORCTX_DTYPE_RANGE_MIN_ = -2147483647 - 1,
  ANCHORCTX_DTYPE_RANGE_MAX_ = 2147483647
} anchorctx_dtype;

typedef enum {
  ANCHORCTX_MASK_CAUSAL = 0,
  ANCHORCTX_MASK_INTRA_DOC = 1,
  ANCHORCTX_MASK_ANCHOR = 2,
  ANCHORCTX_MASK_RANGE_MIN_ = -2147483647 - 1,
  ANCHORCTX_MASK_RANGE_MAX_ = 2147483647
} anchorctx_mask;

/* A packed batch of `num_sequences` sequences (see attention/layout.h):
 *   cu_seqlens  [B+1] token offsets (of the keys);  cu_docs [B+1] offsets into doc_starts
 *   (NULL: one document per sequence, doc_starts unused); doc_starts per-sequence local
 *   document starts;  anchor_lens [B] (NULL: all 0). */
typedef struct {
  int32_t num_sequences;
  const int32_t* cu_seqlens;
  const int32_t* cu_docs;
  const int32_t* doc_starts;
  const int32_t* anchor_lens;
} anchorctx_layout;

typedef struct {
  int32_t heads_q;
  int32_t heads_kv;
  int32_t head_dim;
  float scale;     /* 0: 1/sqrt(head_dim). The backward recomputes the probabilities from the
                      float32 lse, as FlashAttention does, so its error grows with |lse|: on
                      unit-variance q and k, dV is off by ~1e-4 (relative) at scale 1e2, ~1e-2
                      at 1e4 and non-finite from 1e8; at 1/sqrt(head_dim), float32 scales */
  int32_t threads; /* 0: all; at most ANCHORCTX_MAX_THREADS (a call runs no more threads than
                      it has tiles times query heads) */
} anchorctx_attention_params;

anchorctx_status anchorctx_attention_forward(const anchorctx_layout* layout, anchorctx_mask mask,
                                             anchorctx_dtype dtype,
                                             const anchorctx_attention_params* params,
                                             const void* q, const void* k, const void* v, void* out,
                                             float* lse, char* error, size_t error_len);

anchorctx_status anchorctx_attention_backward(const anchorctx_layout* layout, anchorctx_mask mask,
                                              anchorctx_dtype dtype,
                                              const anchorctx_attention_params* params,
                                              const void* q, const void* k, const void* v,
                                              const void* out, const void* dout, const float* lse,
                                              void* dq, void* dk, void* dv, char* error,
                                              size_t error_len);

/* A mask and its modifiers (attention/mask.h). All zero: the causal form of `mask`. */
typedef struct {
  anchorctx_mask mask;
  int32_t window;     /* > 0: a query sees only keys less than `window` positions away (anchors
                         stay visible); 0: unlimited */
  int32_t non_causal; /* nonzero: a query also sees the later keys of its document (of its
                         sequence for ANCHORCTX_MASK_CAUSAL) */
} anchorctx_mask_spec;

/* The block plan of one batch: its layout and mask as the kernels need them. Build it once per
 * batch and reuse it for every layer and for the backward; it is read-only, so several threads
 * may use one plan at the same time. */
typedef struct anchorctx_plan anchorctx_plan;

/* Builds a plan into *plan (which is set to NULL on failure).
 *   cu_seqlens_q  NULL: queries are the keys; else [B+1] query offsets: sequence b has
 *                 cu_seqlens_q[b+1] - cu_seqlens_q[b] queries, at most its keys, standing at its
 *                 LAST key positions (as flash_attn_varlen_func aligns them: prefill with a
 *                 cache, chunked prefill, decode with one query per sequence);
 *   tile_size     0: the default (64); at most ANCHORCTX_MAX_TILE_SIZE
 *                 (ANCHORCTX_INVALID_ARGUMENT above it). */
anchorctx_status anchorctx_plan_create(const anchorctx_layout* layout, const int32_t* cu_seqlens_q,
                                       const anchorctx_mask_spec* mask, int32_t tile_size,
                                       anchorctx_plan** plan, char* error, size_t error_len);

/* Frees a plan; NULL is allowed. */
void anchorctx_plan_destroy(anchorctx_plan* plan);

/* Rows of q/out/dout/dq (Tq) and of k/v/dk/dv (Tk) the plan expects; -1 for a NULL plan. */
int64_t anchorctx_plan_query_tokens(const anchorctx_plan* plan);
int64_t anchorctx_plan_key_tokens(const anchorctx_plan* plan);

/* Forward and backward with a plan. `strides` (in elements) gives each [tokens, heads, D]
 * tensor's row stride per token and per head, in pairs {token, head}: q, k, v, out for the
 * forward (8 values), q, k, v, out, dout, dq, dk, dv for the backward (16); NULL, or a 0
 * entry, means dense. So the q, k and v slices of a fused [T, Hq + 2 Hkv, D] buffer are used in
 * place: token stride (Hq + 2 Hkv) * D, head stride D. */
anchorctx_status anchorctx_attention_forward_plan(const anchorctx_plan* plan, anchorctx_dtype dtype,
                                                  const anchorctx_attention_params* params,
                                                  const void* q, const void* k, const void* v,
                                                  void* out, float* lse, const int64_t* strides,
                                                  char* error, size_t error_len);

anchorctx_status anchorctx_attention_backward_plan(
    const anchorctx_plan* plan, anchorctx_dtype dtype, const anchorctx_attention_params* params,
    const void* q, const void* k, const void* v, const void* out, const void* dout,
    const float* lse, void* dq, void* dk, void* dv, const int64_t* strides, char* error,
    size_t error_len);

/* The library version, e.g. "0.1.0". */
const char* anchorctx_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ANCHORCTX_ANCHORCTX_H_ */
