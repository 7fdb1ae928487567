// The kernels for AVX2 + FMA (8 floats a vector; 6 x 16 register blocks use 12 of 16 ymm).
#define ANCHORCTX_ISA avx2
#define ANCHORCTX_VEC_WIDTH 8
#define ANCHORCTX_GEMM_ROWS 6
#define ANCHORCTX_GEMM_VECS 2
#include "attention/cpu/kernels_impl.h"
