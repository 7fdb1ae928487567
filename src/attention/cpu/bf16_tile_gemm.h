// The register-blocked product of the native bf16 kernels (kernels_native_bf16.h):
//
//   C[M, N] (+)= A[M, K] * B[K, N]     (float32 C; bf16 A and B; float32 sums)
//
// on `vdpbf16ps`, which multiplies 16 PAIRS of bf16 and adds each pair's two products into
// one float32 lane. So the operands come in pairs along K:
//   A: bf16 rows, row m at A + m * lda, elements k and k+1 adjacent (read as one 32-bit word
//      and broadcast);
//   B: 32-bit words, word (k2, n) at B + k2 * ldb + n holding B[2 k2, n] (low half) and
//      B[2 k2 + 1, n] (high half): the callers stage or pack their right operands this way.
// K2 = ceil(K / 2) pairs; an odd K needs a zero in the last pair's second half of A or B.
// N must be a multiple of 16 (callers pad with zero columns); M is free.
#pragma once

// Included by kernels_impl.h inside its per-ISA namespace (a TU compiled with -mavx512bf16),
// after <cstddef>, <cstdint>, <cstring> and <immintrin.h>: it has no includes of its own.

template <int MaxRows, int MaxVecs>
struct Bf16TileGemm {
  static constexpr int W = 16;

  // One MR x (NV * 16) block of C, accumulated over all K in registers: per pair of K, NV
  // loads of B, MR broadcasts of A, MR * NV dot products (6 x 4: 24 accumulators, enough to
  // hide the instruction's latency). `Acc` (accumulate into C) is a template parameter and the
  // K loop a do-while (K2 >= 1: run() returns before a block for K2 = 0): a run-time choice,
  // or a loop that may run zero times, made GCC 12 keep the accumulators on the stack as well,
  // storing all 24 there and reloading them around the loop (objdump); the do-while measured
  // +12-18% at K2 = 32 (D = 64's products) on Zen 4.
  template <int MR, int NV, bool Acc>
  static void block(int K2, const std::uint16_t* A, std::ptrdiff_t lda, const std::uint32_t* B,
                    std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; ++i) {
      for (int v = 0; v < NV; ++v) {
        if constexpr (Acc) {
          acc[i][v] = _mm512_loadu_ps(C + i * ldc + v * W);
        } else {
          acc[i][v] = _mm512_setzero_ps();
        }
      }
    }
    int k = 0;
    do {
      __m512bh b[NV];
      for (int v = 0; v < NV; ++v)
        b[v] = (__m512bh)_mm512_loadu_si512(B + k * ldb + v * W);
      for (int i = 0; i < MR; ++i) {
        std::int32_t pair;
        std::memcpy(&pair, A + i * lda + 2 * k, sizeof(pair));
        const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
        for (int v = 0; v < NV; ++v)
          acc[i][v] = _mm512_dpbf16_ps(acc[i][v], a, b[v]);
      }
    } while (++k < K2);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v)
        _mm512_storeu_ps(C + i * ldc + v * W, acc[i][v]);
  }

  template <int NV, bool Acc>
  static void column_panel(int M, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                           const std::uint32_t* B, std::ptrdiff_t ldb, float* C,
                           std::ptrdiff_t ldc) {
    int m = 0;
    for (; m + MaxRows <= M; m += MaxRows)
      block<MaxRows, NV, Acc>(K2, A + m * lda, lda, B, ldb, C + m * ldc, ldc);
    if (m < M)
      tail_rows<NV, MaxRows - 1, Acc>(M - m, K2, A + m * lda, lda, B, ldb, C + m * ldc, ldc);
  }

  // The last M % MaxRows rows: dispatch to the block of exactly that height.
  template <int NV, int MR, bool Acc>
  static void tail_rows(int rows, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                        const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    if constexpr (MR >= 1) {
      if (rows == MR) return block<MR, NV, Acc>(K2, A, lda, B, ldb, C, ldc);
      tail_rows<NV, MR - 1, Acc>(rows, K2, A, lda, B, ldb, C, ldc);
    }
  }

  template <int NV, bool Acc>
  static void tail_cols(int vecs, int M, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                        const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    if constexpr (NV >= 1) {
      if (vecs == NV) return column_panel<NV, Acc>(M, K2, A, lda, B, ldb, C, ldc);
      tail_cols<NV - 1, Acc>(vecs, M, K2, A, lda, B, ldb, C, ldc);
    }
  }

  template <bool Acc>
  static void run_as(int M, int N, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                     const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
    constexpr int NR = MaxVecs * W;
    int n = 0;
    for (; n + NR <= N; n += NR)
      column_panel<MaxVecs, Acc>(M, K2, A, lda, B + n, ldb, C + n, ldc);
    if (n < N) tail_cols<MaxVecs - 1, Acc>((N - n) / W, M, K2, A, lda, B + n, ldb, C + n, ldc);
  }

  // C[M, N] = (accumulate ? C : 0) + A * B over K2 pairs. N % 16 == 0.
  static void run(int M, int N, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                  const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                  bool accumulate) {
    if (K2 <= 0) {  // an empty sum
      if (!accumulate) {
        for (int i = 0; i < M; ++i)
          std::memset(C + i * ldc, 0, sizeof(float) * static_cast<std::size_t>(N));
      }
      return;
    }
    if (accumulate) return run_as<true>(M, N, K2, A, lda, B, ldb, C, ldc);
    run_as<false>(M, N, K2, A, lda, B, ldb, C, ldc);
  }
};
