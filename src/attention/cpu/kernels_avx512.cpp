// The kernels for AVX-512 (16 floats a vector; 6 x 64 register blocks use 24 of 32 zmm).
#define ANCHORCTX_ISA avx512
#define ANCHORCTX_VEC_WIDTH 16
#define ANCHORCTX_GEMM_ROWS 6
#define ANCHORCTX_GEMM_VECS 4
#include "attention/cpu/kernels_impl.h"
