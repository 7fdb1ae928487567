// compute_frequencies: transformers' rope utilities (modeling_rope_utils.py, 5.24) step by step,
// each value in the precision torch holds it in. The rules that matter for bit-exactness:
//   - tensors are float32: `arange(0, dim, 2).float() / dim`, inv_freq and everything computed
//     from it; a Python float meeting a float32 tensor is first rounded to float32;
//   - `scalar / tensor` is torch's __rtruediv__, i.e. reciprocal(tensor) * scalar: two roundings;
//   - plain Python arithmetic (the yarn correction range, attention factors, the init-time
//     dynamic base) is float64.
// The one step that is not IEEE-exact is `base ** exponent`: std::pow on floats here (glibc's
// powf, correctly rounded), SLEEF's pow in torch's vectorised CPU kernel (within 1 ulp). They
// disagree on a few frequencies of some configs (docs/ROPE.md; the tests bound it).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "anchorctx/core/error.h"
#include "anchorctx/rope/rope.h"

// Every float32 product and sum must round on its own, as torch's separate kernels do: no
// a * b + c fused into an FMA. CMakeLists.txt compiles the rope part with -ffp-contract=off.

namespace anchorctx::rope {
namespace {

constexpr double kPi = std::numbers::pi;

// Frequencies of the fixed RoPE (theta^(-2i/dim)) and the pow they come from, for a float32
// base. pow_[i] = base ** (float(2i) / float(dim)), as `base ** (arange(0, dim, 2).float() / dim)`.
std::vector<float> base_powers(float base, std::int64_t dim) {
  std::vector<float> p(static_cast<std::size_t>(dim / 2));
  for (std::size_t i = 0; i < p.size(); ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    p[i] = std::pow(base, exponent);  // the float overload: powf
  }
  return p;
}

// 1.0 / (base ** e): torch's reciprocal, one IEEE division.
std::vector<float> reciprocal(std::vector<float> p) {
  for (float& v : p)
    v = 1.0f / v;
  return p;
}

void check_factor(const RopeScaling& s) {
  require(std::isfinite(s.factor) && s.factor > 0.0,
          "rope_scaling ({}): factor must be a positive number, got {}", to_string(s.type),
          s.factor);
}

// The context the model was trained with, which llama3 and yarn scale from.
std::int64_t original_context(const RopeSpec& spec) {
  const RopeScaling& s = spec.scaling;
  const std::int64_t context =
      s.original_max_position_embeddings.value_or(spec.max_position_embeddings);
  require(context > 0,
          "rope_scaling ({}): original_max_position_embeddings must be positive, got {}",
          to_string(s.type), context);
  return context;
}

// linear: inv_freq /= factor (a float32 division by float32(factor)).
std::vector<float> linear(const RopeSpec& spec) {
  check_factor(spec.scaling);
  std::vector<float> inv = reciprocal(base_powers(static_cast<float>(spec.theta), spec.head_dim));
  const float factor = static_cast<float>(spec.scaling.factor);
  for (float& v : inv)
    v /= factor;
  return inv;
}

// dynamic (NTK): base grows with the sequence once it passes max_position_embeddings:
//   base' = theta * (factor * seq_len / max_pos - (factor - 1)) ^ (dim / (dim - 2)).
// At init (seq_len <= max_pos) transformers evaluates it in Python floats with seq_len =
// max_pos; past it, dynamic_rope_update passes seq_len as an int64 tensor, which makes the
// whole expression a float32 0-d tensor.
std::vector<float> dynamic(const RopeSpec& spec, std::int64_t seq_len) {
  const RopeScaling& s = spec.scaling;
  check_factor(s);
  require(spec.max_position_embeddings > 0,
          "rope_scaling (dynamic): max_position_embeddings must be positive, got {}",
          spec.max_position_embeddings);
  require(spec.head_dim > 2, "rope_scaling (dynamic): head_dim must be above 2, got {}",
          spec.head_dim);
  const std::int64_t dim = spec.head_dim, max_pos = spec.max_position_embeddings;
  const double exponent = static_cast<double>(dim) / static_cast<double>(dim - 2);
  float base = 0.0f;
  if (seq_len <= max_pos) {
    const double ratio = s.factor * static_cast<double>(max_pos) / static_cast<double>(max_pos);
    base = static_cast<float>(spec.theta * std::pow(ratio - (s.factor - 1.0), exponent));
  } else {
    float ratio = static_cast<float>(s.factor) * static_cast<float>(seq_len);
    ratio = ratio / static_cast<float>(max_pos);
    ratio = ratio - static_cast<float>(s.factor - 1.0);
    // The 0-d tensor takes torch's scalar loop of pow(tensor, python float): std::pow(float,
    // double), i.e. in double, rounded to float32.
    const float grown = static_cast<float>(std::pow(static_cast<double>(ratio), exponent));
    base = static_cast<float>(spec.theta) * grown;
  }
  return reciprocal(base_powers(base, dim));
}

// llama3: wavelengths longer than original_max / low_freq_factor are slowed by `factor`,
// shorter than original_max / high_freq_factor kept, and the band between blended smoothly.
std::vector<float> llama3(const RopeSpec& spec) {
  const RopeScaling& s = spec.scaling;
  check_factor(s);
  const std::int64_t old_context = original_context(spec);
  require(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor,
          "rope_scaling (llama3): needs 0 < low_freq_factor < high_freq_factor, got {} and {}",
          s.low_freq_factor, s.high_freq_factor);

  const float factor = static_cast<float>(s.factor);
  const float low_wavelen =
      static_cast<float>(static_cast<double>(old_context) / s.low_freq_factor);
  const float high_wavelen =
      static_cast<float>(static_cast<double>(old_context) / s.high_freq_factor);
  const float two_pi = static_cast<float>(2 * kPi);
  const float old_f = static_cast<float>(old_context);
  const float low_f = static_cast<float>(s.low_freq_factor);
  const float span = static_cast<float>(s.high_freq_factor - s.low_freq_factor);

  std::vector<float> inv = reciprocal(base_powers(static_cast<float>(spec.theta), spec.head_dim));
  for (float& f : inv) {
    const float wavelen = (1.0f / f) * two_pi;  // 2 * math.pi / inv_freq
    const float scaled = wavelen > low_wavelen ? f / factor : f;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (medium) {
      const float smooth = ((1.0f / wavelen) * old_f - low_f) / span;
      f = (1.0f - smooth) * scaled / factor + smooth * scaled;
    } else {
      f = scaled;
    }
  }
  return inv;
}

// yarn's attention factor: 0.1 * mscale * ln(scale) + 1 above scale 1.
double yarn_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// yarn: per dimension a blend of interpolated (divided by factor) and extrapolated (kept)
// frequencies, by a linear ramp between the dimensions where the original context makes
// beta_fast and beta_slow rotations; cos/sin scaled by an attention factor.
RopeFrequencies yarn(const RopeSpec& spec) {
  const RopeScaling& s = spec.scaling;
  check_factor(s);
  const std::int64_t original_max = original_context(spec);
  const std::int64_t dim = spec.head_dim;
  const double factor = s.factor;

  // Python: `if mscale and mscale_all_dim` (0 counts as absent), float64 throughout.
  double attention_factor = 0.0;
  if (s.attention_factor) {
    attention_factor = *s.attention_factor;
  } else if (s.mscale.value_or(0.0) != 0.0 && s.mscale_all_dim.value_or(0.0) != 0.0) {
    attention_factor = yarn_mscale(factor, *s.mscale) / yarn_mscale(factor, *s.mscale_all_dim);
  } else {
    attention_factor = yarn_mscale(factor, 1.0);
  }
  require(std::isfinite(attention_factor) && attention_factor > 0.0,
          "rope_scaling (yarn): attention factor must be positive, got {}", attention_factor);

  // `beta_fast or 32`, `beta_slow or 1`: 0 means the default.
  const double beta_fast = s.beta_fast != 0.0 ? s.beta_fast : 32.0;
  const double beta_slow = s.beta_slow != 0.0 ? s.beta_slow : 1.0;
  const auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) *
            std::log(static_cast<double>(original_max) / (rotations * 2 * kPi))) /
           (2 * std::log(spec.theta));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (s.truncate.value_or(true)) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers: "Prevent singularity"

  const std::vector<float> pos_freqs = base_powers(static_cast<float>(spec.theta), dim);
  const float factor_f = static_cast<float>(factor);
  const float low_f = static_cast<float>(low);
  const float range_f = static_cast<float>(high - low);
  RopeFrequencies result;
  result.inv_freq.resize(pos_freqs.size());
  for (std::size_t i = 0; i < pos_freqs.size(); ++i) {
    const float extrapolation = 1.0f / pos_freqs[i];
    const float interpolation = 1.0f / (factor_f * pos_freqs[i]);
    const float ramp = std::clamp((static_cast<float>(i) - low_f) / range_f, 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    result.inv_freq[i] =
        interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  result.attention_scaling = static_cast<float>(attention_factor);
  return result;
}

}  // namespace

RopeFrequencies compute_frequencies(const RopeSpec& spec, std::int64_t seq_len) {
  require(spec.head_dim > 0 && spec.head_dim % 2 == 0,
          "rope: head_dim must be positive and even, got {}", spec.head_dim);
  require(std::isfinite(spec.theta) && spec.theta > 0.0,
          "rope: rope_theta must be a positive number, got {}", spec.theta);
  require(seq_len >= 0, "rope: seq_len must not be negative, got {}", seq_len);
  if (seq_len == 0) seq_len = spec.max_position_embeddings;

  RopeFrequencies result;
  switch (spec.scaling.type) {
    case RopeScalingType::none:
      result.inv_freq = reciprocal(base_powers(static_cast<float>(spec.theta), spec.head_dim));
      break;
    case RopeScalingType::linear:
      result.inv_freq = linear(spec);
      break;
    case RopeScalingType::dynamic:
      result.inv_freq = dynamic(spec, seq_len);
      break;
    case RopeScalingType::llama3:
      result.inv_freq = llama3(spec);
      break;
    case RopeScalingType::yarn:
      result = yarn(spec);
      break;
    default:
      fail("rope: unknown rope_scaling type {}", static_cast<int>(spec.scaling.type));
  }
  return result;
}

}  // namespace anchorctx::rope
