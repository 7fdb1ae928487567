/* anchorctx C API: the stable surface for other languages (Python ctypes, Rust, Julia, ...).
 *
 * Plain C, raw pointers, no exceptions: every function returns an anchorctx_status and, on
 * failure, writes a NUL-terminated message into `error` (when not NULL, at most `error_len`
 * bytes). On failure no output is written. Shapes and semantics are those of
 * include/anchorctx/attention/kernels.h:
 *   q, out, dout, dq [T, Hq, D]; k, v, dk, dv [T, Hkv, D]; lse [Hq, T] float32;
 *   bf16 tensors hold raw bfloat16 bits (uint16).
 */
#ifndef ANCHORCTX_ANCHORCTX_H_
#define ANCHORCTX_ANCHORCTX_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  ANCHORCTX_OK = 0,
  ANCHORCTX_INVALID_ARGUMENT = 1, /* bad layout, shape, pointer or enum */
  ANCHORCTX_INTERNAL_ERROR = 2    /* out of memory or a bug: the message says which */
} anchorctx_status;

typedef enum { ANCHORCTX_F32 = 0, ANCHORCTX_BF16 = 1 } anchorctx_dtype;

typedef enum {
  ANCHORCTX_MASK_CAUSAL = 0,
  ANCHORCTX_MASK_INTRA_DOC = 1,
  ANCHORCTX_MASK_ANCHOR = 2
} anchorctx_mask;

/* A packed batch of `num_sequences` sequences (see attention/layout.h):
 *   cu_seqlens  [B+1] token offsets;  cu_docs [B+1] offsets into doc_starts;
 *   doc_starts  per-sequence local document starts;  anchor_lens [B] (NULL: all 0). */
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
  float scale;     /* 0: 1/sqrt(head_dim) */
  int32_t threads; /* 0: all */
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

/* The library version, e.g. "0.1.0". */
const char* anchorctx_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ANCHORCTX_ANCHORCTX_H_ */
