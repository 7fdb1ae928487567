// The kernels for AVX-512 with AVX512_BF16 and AMX-BF16: bf16 tensors take the native kernels
// of kernels_native_bf16.h with their products on AMX tiles (amx_tile_gemm.h), float32 tensors
// the avx512 code (the same source).
#define ANCHORCTX_ISA amx_bf16
#define ANCHORCTX_VEC_WIDTH 16
#define ANCHORCTX_GEMM_ROWS 6
#define ANCHORCTX_GEMM_VECS 4
#define ANCHORCTX_NATIVE_BF16 1
#define ANCHORCTX_AMX 1
#include "attention/cpu/kernels_impl.h"
