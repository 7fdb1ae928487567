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

  // One MR x (NV * W) block of C, accumulated over all K in registers. `Acc` (accumulate into
  // C) is a template parameter and the K loop a do-while (K >= 1: run() returns before a block
  // for K = 0): a run-time choice, or a loop that may run zero times, made GCC 12 keep the
  // accumulators on the stack as well, storing all 24 there and reloading them around the loop
  // (objdump); measured +5-10% for K of 64 to 256 on Zen 4.
  template <int MR, int NV, bool Acc>
  static void block(int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak, const float* B,
                    std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    V acc[MR][NV];
    for (int i = 0; i < MR; ++i) {
      for (int v = 0; v < NV; ++v) {
        if constexpr (Acc) {
          acc[i][v] = S::load(C + i * ldc + v * W);
        } else {
          acc[i][v] = V{};
        }
      }
    }
    int k = 0;
    do {
      V b[NV];
      for (int v = 0; v < NV; ++v)
        b[v] = S::load(B + k * ldb + v * W);
      const float* a = A + k * sak;
      for (int i = 0; i < MR; ++i) {
        const V ai = S::set1(a[i * sam]);
        for (int v = 0; v < NV; ++v)
          acc[i][v] = ai * b[v] + acc[i][v];
      }
    } while (++k < K);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v)
        S::store(C + i * ldc + v * W, acc[i][v]);
  }

  template <int NV, bool Acc>
  static void column_panel(int M, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                           const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    int m = 0;
    for (; m + MaxRows <= M; m += MaxRows)
      block<MaxRows, NV, Acc>(K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc);
    if (m < M)
      tail_rows<NV, MaxRows - 1, Acc>(M - m, K, A + m * sam, sam, sak, B, ldb, C + m * ldc, ldc);
  }

  // The last M % MaxRows rows: dispatch to the block of exactly that height.
  template <int NV, int MR, bool Acc>
  static void tail_rows(int rows, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                        const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    if constexpr (MR >= 1) {
      if (rows == MR) return block<MR, NV, Acc>(K, A, sam, sak, B, ldb, C, ldc);
      tail_rows<NV, MR - 1, Acc>(rows, K, A, sam, sak, B, ldb, C, ldc);
    }
  }

  template <int NV, bool Acc>
  static void tail_cols(int vecs, int M, int K, const float* A, std::ptrdiff_t sam,
                        std::ptrdiff_t sak, const float* B, std::ptrdiff_t ldb, float* C,
                        std::ptrdiff_t ldc) {
    if constexpr (NV >= 1) {
      if (vecs == NV) return column_panel<NV, Acc>(M, K, A, sam, sak, B, ldb, C, ldc);
      tail_cols<NV - 1, Acc>(vecs, M, K, A, sam, sak, B, ldb, C, ldc);
    }
  }

  template <bool Acc>
  static void run_as(int M, int N, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                     const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    constexpr int NR = MaxVecs * W;
    int n = 0;
    for (; n + NR <= N; n += NR)
      column_panel<MaxVecs, Acc>(M, K, A, sam, sak, B + n, ldb, C + n, ldc);
    if (n < N) tail_cols<MaxVecs - 1, Acc>((N - n) / W, M, K, A, sam, sak, B + n, ldb, C + n, ldc);
  }

  // C[M, N] = (accumulate ? C : 0) + A * B. N % W == 0.
  static void run(int M, int N, int K, const float* A, std::ptrdiff_t sam, std::ptrdiff_t sak,
                  const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                  bool accumulate) {
    if (K <= 0) {  // an empty sum
      if (!accumulate) {
        for (int i = 0; i < M; ++i)
          std::memset(C + i * ldc, 0, sizeof(float) * static_cast<std::size_t>(N));
      }
      return;
    }
    if (accumulate) return run_as<true>(M, N, K, A, sam, sak, B, ldb, C, ldc);
    run_as<false>(M, N, K, A, sam, sak, B, ldb, C, ldc);
  }
};
