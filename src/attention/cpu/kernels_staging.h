// Element access (float32 or bf16 bits) and the staging of the inputs as float32 rows and
// transposed key tiles that the products read in place, once per call.
//
// Part of kernels_impl.h: included inside its anonymous namespace, once per instruction set,
// after the parts above it there; no includes of its own.
#pragma once

inline float to_f32(float x) {
  return x;
}
inline float to_f32(std::uint16_t bits) {
  return core::bf16_bits_to_float(bits);
}
inline void from_f32(float x, float* dst) {
  *dst = x;
}
inline void from_f32(float x, std::uint16_t* dst) {
  *dst = core::float_to_bf16_bits(x);
}

// A [tokens, heads, D] tensor of T with resolved strides (kernels.cpp fills the defaults).
template <typename T>
struct View {
  T* base;
  std::ptrdiff_t token, head;
  T* row(std::int64_t t, int h) const { return base + t * token + h * head; }
};
template <typename T>
View<const T> view(const void* p, const Strides& s) {
  return {static_cast<const T*>(p), s.token, s.head};
}
template <typename T>
View<T> view(void* p, const Strides& s) {
  return {static_cast<T*>(p), s.token, s.head};
}

// One row of D values as float32 times `mul` into d[0, Dp) (zeros past D). A row holding a
// non-finite value is stored as zeros and reported (true): its NaN must not meet a masked
// zero probability in a product (0 * NaN = NaN would leak past the mask); nan_rules.h writes
// the NaNs it should cause afterwards. The test is an OR of exponent bits, which vectorises.
template <typename T>
bool convert_row(const T* s, int D, int Dp, float mul, float* d) {
  std::uint32_t special = 0;
  for (int c = 0; c < D; ++c) {
    const float x = to_f32(s[c]);
    special |=
        static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(x) & 0x7F800000u) == 0x7F800000u);
    d[c] = x * mul;
  }
  for (int c = D; c < Dp; ++c)
    d[c] = 0.0f;
  if (special == 0) return false;
  std::fill_n(d, Dp, 0.0f);
  return true;
}

// Rows [t0, t0 + rows) of head h into a dense [rows, Dp] tile, times `mul`; flags the
// non-finite rows in bad[t] (bad is [tokens] of this head).
template <typename T>
void load_rows(View<const T> src, std::int64_t t0, int h, int rows, int D, int Dp, float mul,
               float* dst, std::uint8_t* bad) {
  for (int r = 0; r < rows; ++r)
    bad[t0 + r] = convert_row(src.row(t0 + r, h), D, Dp, mul, dst + r * Dp);
}

// --- staging: inputs as float32 tiles the products can read in place ------------------------

// The elements of H heads of rows [tokens][Dp].
inline std::size_t rows_size(int H, std::int64_t tokens, int Dp) {
  return static_cast<std::size_t>(H) * tokens * Dp;
}

// A [T, H, D] tensor seen head by head as float32 rows: row t of head h starts at
// base + h * head_stride + t * row_stride, and holds `Dp` floats (D values, then zeros).
struct Rows {
  const float* base;
  std::ptrdiff_t head_stride, row_stride;
  const float* at(int h, std::int64_t t) const { return base + h * head_stride + t * row_stride; }
};

// The input converted once into [H][T][Dp]. Even a float32 input is copied: read in place,
// the rows of one head lie H * D floats apart -- 4 KiB for 8 heads of 128 -- so a tile's rows
// all fall into the same L1 cache set and evict each other (measured: the backward ran 1.7x
// slower). Call from inside a parallel region (the loop is shared among its threads); `data`
// holds rows_size(H, tokens, Dp) floats.
// Non-finite rows are staged as zeros and flagged in bad [H][tokens] (convert_row).
template <typename T>
Rows stage_rows(View<const T> src, std::int64_t tokens, int H, int D, int Dp, float* data,
                std::uint8_t* bad) {
#pragma omp for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < H; ++h)
      bad[h * tokens + t] = convert_row(src.row(t, h), D, Dp, 1.0f, data + (h * tokens + t) * Dp);
  }
  return {data, tokens * Dp, Dp};
}

// The transpose of a [T, H, D] tensor, tile by tile, as float32 [H][tiles][Dp][tsp]: each
// key/value tile becomes a dense right-hand operand of S = Q K^T or dP = dO V^T, its columns
// past the tile's end zero. (One transposed [Dp][T] matrix per head would put the rows of a
// tile T floats apart, which for T a multiple of 1024 maps them all to one cache set.)
struct Columns {
  const float* base;
  std::ptrdiff_t head_stride, tile_stride, ld;
  const float* at(int h, int tile) const { return base + h * head_stride + tile * tile_stride; }
};

// The elements of H heads of tiles: `tiles` of them (the plan's key tiles, or query tiles), each
// [Dp x tsp].
inline std::size_t tiles_size(int H, int tiles, int Dp, int tsp) {
  return static_cast<std::size_t>(H) * tiles * Dp * tsp;
}

// Non-finite rows become zero columns (convert_row); they are flagged by stage_rows of the
// same tensor, or, where only the columns are staged, in bad [H][tokens] when not null. `data`
// holds tiles_size(H, key tiles, Dp, tsp) floats.
template <typename T>
Columns stage_columns(View<const T> src, const BlockPlan& plan, int H, int D, int Dp, float* data,
                      std::uint8_t* bad) {
  const int tiles = plan.num_kv_tiles(), tsp = round_up(plan.tile_size(), W);
  const std::int64_t tokens = plan.layout().total_tokens();
  const std::ptrdiff_t tile_stride = static_cast<std::ptrdiff_t>(Dp) * tsp;
#pragma omp for schedule(static) collapse(2)
  for (int h = 0; h < H; ++h) {
    for (int j = 0; j < tiles; ++j) {
      const Tile& tile = plan.kv_tile(j);
      float* dst = data + (static_cast<std::ptrdiff_t>(h) * tiles + j) * tile_stride;
      std::fill_n(dst, tile_stride, 0.0f);
      float row[256];
      for (int c = 0; c < tile.size(); ++c) {
        const bool special = convert_row(src.row(tile.begin + c, h), D, D, 1.0f, row);
        if (bad != nullptr) bad[h * tokens + tile.begin + c] = special;
        for (int d = 0; d < D; ++d)
          dst[d * tsp + c] = row[d];
      }
    }
  }
  return {data, tiles * tile_stride, tile_stride, tsp};
}
