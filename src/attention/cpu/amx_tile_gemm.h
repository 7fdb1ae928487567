// The native bf16 kernels' product on Intel AMX (kernels_amx_bf16.cpp): the same contract as
// Bf16TileGemm::run (bf16_tile_gemm.h), whose operand layouts are AMX's own. A is bf16 rows with
// the two elements of a pair adjacent, as a tile of 16 rows x 32 bf16 reads it; B is 32-bit
// words of pairs, word (k2, n) at B + k2 * ldb + n, which is AMX's "VNNI" layout of the right
// operand, a tile of 16 pair-rows x 16 columns. `tdpbf16ps` multiplies a 16 x 32 A tile by a
// 32 x 16 B tile into a 16 x 16 float32 tile: 8192 bf16 products per instruction, float32
// sums, the pair's two products added as vdpbf16ps adds them.
//
// AMX covers the rows and pairs that fill whole tiles (M and K2 rounded down to 16); the rest
// (the last M % 16 rows, the last K2 % 16 pairs) goes through the AVX512_BF16 blocks, so any
// shape runs and short products (a document's last few keys) cost no tile set-up.
#pragma once

// Included by kernels_impl.h inside its per-ISA namespace (a TU compiled with -mamx-tile
// -mamx-bf16 and AVX512_BF16), after bf16_tile_gemm.h: no includes of its own.

struct AmxBf16Gemm {
  using Fallback = Bf16TileGemm<ANCHORCTX_GEMM_ROWS, ANCHORCTX_GEMM_VECS>;
  static constexpr int kRows = 16;   // rows of a tile
  static constexpr int kPairs = 16;  // K pairs of a tile (64 bytes of bf16 per A row)
  static constexpr int kCols = 16;   // float32 columns of a C tile

  // Palette 1, the eight tiles all 16 rows x 64 bytes: C in 0-3 (a 2 x 2 block of 16 x 16
  // tiles), A in 4-5, B in 6-7.
  struct alignas(64) TileConfig {
    std::uint8_t palette = 1;
    std::uint8_t start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
  };

  // The tile configuration is loaded on every call: other AMX users on the same thread
  // (oneDNN's GEMMs between two attention calls) load their own. The load did not show in a
  // perf profile of the kernels (causal T = 4096, D = 128), next to the tile loads and products.
  static void configure() {
    static const TileConfig config{};
    _tile_loadconfig(&config);
  }

  // C rows [m, m + 16 RM) x columns [n, n + 16 RN) (+)= A * B over K16 pairs.
  template <int RM, int RN>
  static void block(int K16, const std::uint16_t* A, std::ptrdiff_t lda, const std::uint32_t* B,
                    std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc, bool accumulate) {
    const std::ptrdiff_t a_stride = lda * 2, b_stride = ldb * 4, c_stride = ldc * 4;
    float* c1 = C + kRows * ldc;  // the second row of C tiles
    if (accumulate) {
      _tile_loadd(0, C, c_stride);
      if constexpr (RN == 2) _tile_loadd(1, C + kCols, c_stride);
      if constexpr (RM == 2) _tile_loadd(2, c1, c_stride);
      if constexpr (RM == 2 && RN == 2) _tile_loadd(3, c1 + kCols, c_stride);
    } else {
      _tile_zero(0);
      if constexpr (RN == 2) _tile_zero(1);
      if constexpr (RM == 2) _tile_zero(2);
      if constexpr (RM == 2 && RN == 2) _tile_zero(3);
    }
    for (int k = 0; k < K16; k += kPairs) {
      _tile_loadd(4, A + 2 * k, a_stride);
      _tile_loadd(6, B + k * ldb, b_stride);
      if constexpr (RN == 2) _tile_loadd(7, B + k * ldb + kCols, b_stride);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (RN == 2) _tile_dpbf16ps(1, 4, 7);
      if constexpr (RM == 2) {
        _tile_loadd(5, A + kRows * lda + 2 * k, a_stride);
        _tile_dpbf16ps(2, 5, 6);
        if constexpr (RN == 2) _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, C, c_stride);
    if constexpr (RN == 2) _tile_stored(1, C + kCols, c_stride);
    if constexpr (RM == 2) _tile_stored(2, c1, c_stride);
    if constexpr (RM == 2 && RN == 2) _tile_stored(3, c1 + kCols, c_stride);
  }

  template <int RM>
  static void row_block(int N, int K16, const std::uint16_t* A, std::ptrdiff_t lda,
                        const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                        bool accumulate) {
    int n = 0;
    for (; n + 2 * kCols <= N; n += 2 * kCols)
      block<RM, 2>(K16, A, lda, B + n, ldb, C + n, ldc, accumulate);
    if (n < N) block<RM, 1>(K16, A, lda, B + n, ldb, C + n, ldc, accumulate);
  }

  // C[M, N] = (accumulate ? C : 0) + A * B over K2 pairs. N % 16 == 0.
  static void run(int M, int N, int K2, const std::uint16_t* A, std::ptrdiff_t lda,
                  const std::uint32_t* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc,
                  bool accumulate) {
    const int M16 = M / kRows * kRows, K16 = K2 / kPairs * kPairs;
    if (M16 == 0 || K16 == 0) return Fallback::run(M, N, K2, A, lda, B, ldb, C, ldc, accumulate);
    configure();
    int m = 0;
    for (; m + 2 * kRows <= M16; m += 2 * kRows)
      row_block<2>(N, K16, A + m * lda, lda, B, ldb, C + m * ldc, ldc, accumulate);
    if (m < M16) row_block<1>(N, K16, A + m * lda, lda, B, ldb, C + m * ldc, ldc, accumulate);
    // The pairs past the last whole tile, added to the tiles' rows; then the rows past the last
    // whole tile, over every pair.
    if (K16 < K2)
      Fallback::run(M16, N, K2 - K16, A + 2 * K16, lda, B + K16 * ldb, ldb, C, ldc, true);
    if (M16 < M)
      Fallback::run(M - M16, N, K2, A + M16 * lda, lda, B, ldb, C + M16 * ldc, ldc, accumulate);
  }
};
