// Register-blocked matrix products on small tiles in L1/L2: the arithmetic core of the
// attention kernels. All five products of FlashAttention (S = Q K^T, O += P V, and in the
// backward dV += P^T dO, dP = dO V^T, dK += dS^T Q, dQ += dS K) are one shape here:
//
//   C[M, N] (+)= A[M, K] * B[K, N]
//
// with B row-major (row stride ldb) and A read through two strides (A(m, k) = A[m*sam +
// k*sak]) so a transposed operand (P^T, dS^T) needs no copy. N must be a multiple of the
// vector width (callers pad tiles with zero columns); M and K are free.
#pragma once

// Included by kernels_impl.h inside its per-ISA namespace, after <cstddef>, <cstdint> and
// <cstring>: it has no includes of its own on purpose.

template <int MaxRows, int MaxVecs>
struct TileGemm {
  using S = Simd;
  using V = S::V;
  static constexpr int W = S::W;

  // One MR x (NV * W) block of C, accumulated over all K in registers.
  template <int MR, int NV>
  static void block(int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak, const float* B,
                    std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc, bool accumulate) {
    V acc[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v)
        acc[i][v] = accumulate ? S::load(C + i * ldc + v * W) : V{};
    for (int k = 0; k < K; ++k) {
      V b[NV];
      for (int v = 0; v < NV; ++v)
        b[v] = S::load(B + k * ldb + v * W);
      const float* a = A + k * sak;
      for (int i = 0; i < MR; ++i) {
        const V ai = S::set1(a[i * sam]);
        for (int v = 0; v < NV; ++v)
          acc[i][v] = ai * b[v] + acc[i][v];
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v)
        S::store(C + i * ldc + v * W, acc[i][v]);
  }

  template <int NV>
  static void column_panel(int M, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                           const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                           bool accumulate) {
    int m = 0;
    for (; m + MaxRows <= M; m += MaxRows)
      block<MaxRows, NV>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc, accumulate);
    if (m < M)
      tail_rows<NV, MaxRows - 1>(M - m, K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc,
                                 accumulate);
  }

  // The last M % MaxRows rows: dispatch to the block of exactly that height.
  template <int NV, int MR>
  static void tail_rows(int rows, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                        const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                        bool accumulate) {
    if constexpr (MR >= 1) {
      if (rows == MR) return block<MR, NV>(K, A, sam, sak, B, ldb, C, ldc, accumulate);
      tail_rows<NV, MR - 1>(rows, K, A, sam, sak, B, ldb, C, ldc, accumulate);
    }
  }

  template <int NV>
  static void tail_cols(int vecs, int M, int K, const float* A, std::ptrdiff_t sam,
                        std::ptrdiff_t sak, const float* B, std::ptrdiff_t ldb, float* C,
                        std::ptrdiff_t ldc, bool accumulate) {
    if constexpr (NV >= 1) {
      if (vecs == NV) return column_panel<NV>(M, K, A, sam, sak, B, ldb, C, ldc, accumulate);
      tail_cols<NV - 1>(vecs, M, K, A, sam, sak, B, ldb, C, ldc, accumulate);
    }
  }

  // C[M, N] = (accumulate ? C : 0) + A * B. N % W == 0.
  static void run(int M, int N, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                  const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                  bool accumulate) {
    constexpr int NR = MaxVecs * W;
    int n = 0;
    for (; n + NR <= N; n += NR)
      column_panel<MaxVecs>(M, K, A, sam, sak, B + n, ldb, C + n, ldc, accumulate);
    if (n < N)
      tail_cols<MaxVecs - 1>((N - n) / W, M, K, A, sam, sak, B + n, ldb, C + n, ldc, accumulate);
  }
};
