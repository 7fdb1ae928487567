// The kernels for any x86-64 (SSE2) or other CPU: 4-float vectors, 4 x 8 register blocks.
#define ANCHORCTX_ISA portable
#define ANCHORCTX_VEC_WIDTH 4
#define ANCHORCTX_GEMM_ROWS 4
#define ANCHORCTX_GEMM_VECS 2
#include "attention/cpu/kernels_impl.h"
