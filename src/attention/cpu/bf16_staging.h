// Staging of the native bf16 kernels' inputs (kernels_native_bf16.h): bf16 [T, H, D] tensors
// copied into the layouts the products read in place, once per call. Pure data movement, so
// it is done with whole vectors: a row is copied by masked loads and stores that also find its
// non-finite values, and a tile changes layout through 16 x 16 transposes of 32-bit words (a
// bf16 pair) in registers. Element by element, the staging measured 5-7% of a native attention
// call at the training model's shape (D = 64), where the products per staged element are fewest
// (docs/PERFORMANCE.md, "Staging in whole vectors").
//
// Included by kernels_native_bf16.h inside its per-ISA namespace (an AVX-512 BW TU), after
// <immintrin.h>, <algorithm> and <vector>: no includes of its own.
#pragma once

// D bf16 values from s into d[0, padded) with zeros past D (padded a multiple of 16). A row
// holding a non-finite value (exponent all ones) is stored as zeros and reported (true),
// convert_row's rule. Masked loads read nothing past s[D - 1].
bool copy_row_bf16(const std::uint16_t* s, int D, int padded, std::uint16_t* d) {
  const __m512i exponent = _mm512_set1_epi16(0x7F80);
  __mmask32 special = 0;
  for (int c = 0; c < padded; c += 32) {
    const int have = std::clamp(D - c, 0, 32), room = std::min(padded - c, 32);
    const __mmask32 load = have == 32 ? ~__mmask32{0} : (__mmask32{1} << have) - 1;
    const __mmask32 store = room == 32 ? ~__mmask32{0} : (__mmask32{1} << room) - 1;
    const __m512i x = _mm512_maskz_loadu_epi16(load, s + c);
    special |= _mm512_cmpeq_epi16_mask(_mm512_and_si512(x, exponent), exponent);
    _mm512_mask_storeu_epi16(d + c, store, x);
  }
  if (special == 0) return false;
  std::fill_n(d, padded, std::uint16_t{0});
  return true;
}

// GCC 12's unpack and lane-shuffle intrinsics start from a self-initialised "undefined" vector
// (avx512fintrin.h: `__m512i __Y = __Y;`), which -Wuninitialized reports once they are inlined
// here; every lane of their results comes from the operands.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The transpose of a 16 x 16 block of 32-bit words: src row r (16 words at src + r *
// src_stride, all readable) becomes column r of dst. Only dst's first `rows` rows and, of
// each, its first `cols` words are written (a block at a tile's edge).
void transpose_words_16x16(const std::uint32_t* src, std::ptrdiff_t src_stride, std::uint32_t* dst,
                           std::ptrdiff_t dst_stride, int rows, int cols) {
  __m512i a[16], b[16];
  for (int r = 0; r < 16; ++r)
    a[r] = _mm512_loadu_si512(src + r * src_stride);
  // Within each 128-bit lane L (columns 4L..4L+3): pairs of rows into b, then groups of four
  // back into a, so that a[4g + k] lane L holds rows 4g..4g+3 of column 4L + k.
  for (int r = 0; r < 16; r += 2) {
    b[r] = _mm512_unpacklo_epi32(a[r], a[r + 1]);
    b[r + 1] = _mm512_unpackhi_epi32(a[r], a[r + 1]);
  }
  for (int g = 0; g < 16; g += 4) {
    a[g] = _mm512_unpacklo_epi64(b[g], b[g + 2]);
    a[g + 1] = _mm512_unpackhi_epi64(b[g], b[g + 2]);
    a[g + 2] = _mm512_unpacklo_epi64(b[g + 1], b[g + 3]);
    a[g + 3] = _mm512_unpackhi_epi64(b[g + 1], b[g + 3]);
  }
  // Column 4L + k gathers lane L of a[k], a[4 + k], a[8 + k], a[12 + k]: a 4 x 4 transpose of
  // 128-bit lanes.
  for (int k = 0; k < 4; ++k) {
    const __m512i lo01 = _mm512_shuffle_i32x4(a[k], a[4 + k], 0x44);
    const __m512i hi01 = _mm512_shuffle_i32x4(a[k], a[4 + k], 0xEE);
    const __m512i lo23 = _mm512_shuffle_i32x4(a[8 + k], a[12 + k], 0x44);
    const __m512i hi23 = _mm512_shuffle_i32x4(a[8 + k], a[12 + k], 0xEE);
    b[k] = _mm512_shuffle_i32x4(lo01, lo23, 0x88);
    b[4 + k] = _mm512_shuffle_i32x4(lo01, lo23, 0xDD);
    b[8 + k] = _mm512_shuffle_i32x4(hi01, hi23, 0x88);
    b[12 + k] = _mm512_shuffle_i32x4(hi01, hi23, 0xDD);
  }
  const __mmask16 store = cols == 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << cols) - 1);
  for (int r = 0; r < rows; ++r)
    _mm512_mask_storeu_epi32(dst + r * dst_stride, store, b[r]);
}

// The 32-bit word transpose of a [rows x cols] matrix (src readable in whole 16 x 16 blocks
// past its edges) into dst [cols x rows].
void transpose_words(const std::uint32_t* src, std::ptrdiff_t src_stride, int rows, int cols,
                     std::uint32_t* dst, std::ptrdiff_t dst_stride) {
  for (int c = 0; c < cols; c += 16) {
    for (int r = 0; r < rows; r += 16) {
      transpose_words_16x16(src + r * src_stride + c, src_stride, dst + c * dst_stride + r,
                            dst_stride, std::min(cols - c, 16), std::min(rows - r, 16));
    }
  }
}

// Rows r and r + 1 of n bf16 each (n a multiple of 16; both readable to a multiple of 32)
// interleaved into n 32-bit words: word c holds row r's element c (low half) and row r + 1's.
void interleave_rows(const std::uint16_t* r0, const std::uint16_t* r1, int n, std::uint32_t* dst) {
  const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40,
                                         8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i second = _mm512_add_epi16(first, _mm512_set1_epi16(16));
  for (int c = 0; c < n; c += 32) {
    const __m512i a = _mm512_loadu_si512(r0 + c), b = _mm512_loadu_si512(r1 + c);
    _mm512_storeu_si512(dst + c, _mm512_permutex2var_epi16(a, first, b));
    if (c + 16 < n) _mm512_storeu_si512(dst + c + 16, _mm512_permutex2var_epi16(a, second, b));
  }
}

// A bf16 [T, H, D] tensor as rows [H][T][Dp] into data (rows_size(H, tokens, Dp) elements;
// call inside a parallel region); non-finite rows are zeros, flagged in bad [H][tokens].
const std::uint16_t* stage_rows_bf16(View<const std::uint16_t> src, std::int64_t tokens, int H,
                                     int D, int Dp, std::uint16_t* data, std::uint8_t* bad) {
#pragma omp for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < H; ++h)
      bad[h * tokens + t] = copy_row_bf16(src.row(t, h), D, Dp, data + (h * tokens + t) * Dp);
  }
  return data;
}

// The layouts of kernels_native_bf16.h's header, for a tile of tsp rows r and Dp columns d:
//   transposed_columns  [Dp/2][tsp] words, word (d/2, r) = elements d, d+1 of row r
//   paired_rows         [tsp/2][Dp] words, word (r/2, d) = rows r, r+1 at column d
//   transposed_rows     [Dp][tsp] bf16, element (d, r); read as words, the pairs of rows
//                       transposed: [Dp][tsp/2] words, word (d, r/2) = rows r, r+1 at d
enum class TileLayout { transposed_columns, paired_rows, transposed_rows };

// A thread's buffers for stage_tiles_bf16, for tiles of tsp rows (padded) and Dp columns: a
// tile's rows gathered plainly, then (transposed_rows) paired, both padded to whole 16 x 16
// blocks of words (32 rows, 32 columns) that the transposes read. Built before the parallel
// region (PerThread, kernels_memory.h), as every allocation of a size the caller chooses.
struct Bf16Staging {
  Bf16Staging(int tsp, int Dp)
      : rows_padded(round_up(tsp, 32)),
        cols_padded(round_up(Dp, 32)),
        gathered(static_cast<std::size_t>(rows_padded) * cols_padded),
        paired(gathered.size() / 2) {}
  int rows_padded, cols_padded;
  std::vector<std::uint16_t> gathered;
  std::vector<std::uint32_t> paired;
};

// Tiles of a bf16 [T, H, D] tensor, each a [Dp x tsp] block of bf16 in one of the layouts
// above, zeros wherever the tile has no row (call inside a parallel region, with this thread's
// buffers for the plan's tsp and this Dp). `q_tiles` picks the plan's query tiles, else its key
// tiles; data holds tiles_size(H, those tiles, Dp, tsp) elements. Non-finite rows are zeros,
// flagged in bad [H][tokens] when bad is not null.
const std::uint16_t* stage_tiles_bf16(View<const std::uint16_t> src, const BlockPlan& plan,
                                      bool q_tiles, int H, int D, int Dp, TileLayout layout,
                                      std::uint16_t* data, std::uint8_t* bad,
                                      Bf16Staging& buffers) {
  const int tiles = q_tiles ? plan.num_q_tiles() : plan.num_kv_tiles();
  const int tsp = round_up(plan.tile_size(), W);
  const std::int64_t tokens =
      q_tiles ? plan.layout().total_q_tokens() : plan.layout().total_tokens();
  const std::ptrdiff_t tile_elems = static_cast<std::ptrdiff_t>(Dp) * tsp;
  const int rows_padded = buffers.rows_padded, cols_padded = buffers.cols_padded;
  // Plain pointers: the byte stores to `bad` may alias anything, a vector's pointer included.
  std::uint16_t* const gathered = buffers.gathered.data();
  std::uint32_t* const paired = buffers.paired.data();
  auto gathered_row = [&](int r) {
    return gathered + static_cast<std::ptrdiff_t>(r) * cols_padded;
  };
#pragma omp for schedule(static) collapse(2)
  for (int h = 0; h < H; ++h) {
    for (int j = 0; j < tiles; ++j) {
      const Tile& tile = q_tiles ? plan.q_tile(j) : plan.kv_tile(j);
      std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(
          data + (static_cast<std::ptrdiff_t>(h) * tiles + j) * tile_elems);
      for (int r = 0; r < tile.size(); ++r) {
        const bool special =
            copy_row_bf16(src.row(tile.begin + r, h), D, cols_padded, gathered_row(r));
        if (bad != nullptr) bad[h * tokens + tile.begin + r] = special;
      }
      std::fill(gathered_row(tile.size()), gathered_row(rows_padded), std::uint16_t{0});
      const auto* words_of_rows = reinterpret_cast<const std::uint32_t*>(gathered);
      switch (layout) {
        case TileLayout::transposed_columns:
          transpose_words(words_of_rows, cols_padded / 2, tsp, Dp / 2, dst, tsp);
          break;
        case TileLayout::paired_rows:
          for (int r = 0; r < tsp; r += 2)
            interleave_rows(gathered_row(r), gathered_row(r + 1), Dp, dst + r / 2 * Dp);
          break;
        case TileLayout::transposed_rows:
          for (int r = 0; r < tsp; r += 2)
            interleave_rows(gathered_row(r), gathered_row(r + 1), Dp, paired + r / 2 * cols_padded);
          transpose_words(paired, cols_padded, tsp / 2, Dp, dst, tsp / 2);
          break;
      }
    }
  }
  return data;
}
