// ParameterLayout, initialisation and loading (see parameters.h).
#include "anchorctx/model/parameters.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/core/error.h"
#include "anchorctx/model/safetensors.h"
#include "anchorctx/model/tensor_schema.h"
#include "model/weight_checks.h"

namespace anchorctx::model {
namespace {

constexpr std::size_t kAlign = 16;  // elements: 64 bytes of float32

std::size_t align_up(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// Normal samples from one mt19937_64 stream by Box-Muller: each pair of 64-bit draws (u1, u2)
// gives r cos(2 pi u2), then r sin(2 pi u2), r = sqrt(-2 ln u1); the uniforms are the draws'
// top 53 bits, u1 in (0, 1] so the logarithm is finite. The generator and the uniforms are
// exact integer arithmetic, the same everywhere; log/sin/cos are the C library's, so the bits
// agree wherever those agree (glibc's double versions give the same results on every CPU).
class NormalStream {
 public:
  explicit NormalStream(std::uint64_t seed) : gen_(seed) {}

  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    constexpr double kScale = 1.0 / 9007199254740992.0;  // 2^-53
    const double u1 = static_cast<double>((gen_() >> 11) + 1) * kScale;
    const double u2 = static_cast<double>(gen_() >> 11) * kScale;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace

ParameterLayout ParameterLayout::for_config(const LlamaConfig& config) {
  const ModelTensors<TensorSpec> schema = tensor_schema(config);
  ParameterLayout layout;
  layout.index_ = empty_slots<std::ptrdiff_t>(schema);
  for_each_tensor(
      [&](const TensorSpec& spec, std::ptrdiff_t& index) {
        index = -1;
        if (!spec.present) return;
        for (const std::int64_t d : spec.shape)
          require(d > 0, "parameter '{}': dimension {} is not positive", spec.name, d);
        ParameterInfo p;
        p.name = spec.name;
        p.shape = spec.shape;
        p.size = static_cast<std::size_t>(spec.numel());
        p.offset = layout.total_;
        p.decay = spec.decay;
        layout.total_ = align_up(layout.total_ + p.size);
        index = static_cast<std::ptrdiff_t>(layout.params_.size());
        layout.params_.push_back(std::move(p));
      },
      schema, layout.index_);
  return layout;
}

ModelTensors<const ParameterInfo*> ParameterLayout::tensors() const {
  ModelTensors<const ParameterInfo*> out{};
  out.layers.resize(index_.layers.size());
  for_each_tensor(
      [&](const std::ptrdiff_t& index, const ParameterInfo*& slot) {
        slot = index < 0 ? nullptr : &params_[static_cast<std::size_t>(index)];
      },
      index_, out);
  return out;
}

std::int64_t ParameterLayout::count() const {
  std::int64_t n = 0;
  for (const ParameterInfo& p : params_)
    n += static_cast<std::int64_t>(p.size);
  return n;
}

const ParameterInfo* ParameterLayout::find(std::string_view name) const {
  for (const ParameterInfo& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const ParameterInfo& ParameterLayout::at(std::string_view name) const {
  const ParameterInfo* p = find(name);
  if (p == nullptr) fail("no parameter '{}' in the layout ({} tensors)", name, params_.size());
  return *p;
}

// Draw order: parameters in layout order, elements in order; only the normally distributed
// tensors (matrices, embedding) take samples from the stream, so a config with biases draws the
// same matrix values as one without. As transformers' nn.Embedding(padding_idx=pad_token_id)
// init does, the embedding row of pad_token_id is drawn and then zeroed.
void init_parameters(const ParameterLayout& layout, const LlamaConfig& config, std::uint64_t seed,
                     std::span<float> params) {
  require(params.size() == layout.total(),
          "init_parameters: buffer of {} elements, the layout needs {}", params.size(),
          layout.total());
  std::fill(params.begin(), params.end(), 0.0f);  // padding and biases
  NormalStream normal(seed);
  const double std_dev = config.initializer_range;
  for (const ParameterInfo& p : layout.params()) {
    const std::span<float> slice = params.subspan(p.offset, p.size);
    if (p.shape.size() == 2) {
      for (float& x : slice)
        x = static_cast<float>(normal.next() * std_dev);
    } else if (!p.name.ends_with(".bias")) {
      std::fill(slice.begin(), slice.end(), 1.0f);  // RMSNorm weights
    }                                               // biases stay 0
  }
  if (config.pad_token_id && *config.pad_token_id >= 0 &&
      *config.pad_token_id < config.vocab_size) {
    const ParameterInfo& embed = *layout.tensors().embed_tokens;
    const auto hidden = static_cast<std::size_t>(config.hidden_size);
    const auto row = static_cast<std::size_t>(*config.pad_token_id);
    std::fill_n(params.begin() + static_cast<std::ptrdiff_t>(embed.offset + row * hidden), hidden,
                0.0f);
  }
}

void load_parameters(const SafetensorsReader& reader, const ParameterLayout& layout,
                     std::span<float> params) {
  require(params.size() == layout.total(),
          "{}: load_parameters: buffer of {} elements, the layout needs {}", reader.source(),
          params.size(), layout.total());
  std::fill(params.begin(), params.end(), 0.0f);  // padding
  std::set<std::string> used;
  const bool tied = layout.find("lm_head.weight") == nullptr;
  for (const ParameterInfo& p : layout.params()) {
    const std::string name = stored_tensor_name(reader, p.name, tied);
    const TensorInfo* info = reader.find(name);
    if (info == nullptr) {
      // Which file is missing it: the single file, or the folder of a sharded checkpoint.
      fail("{}: no tensor '{}' (the config calls for it)", reader.source(), p.name);
    }
    if (info->shape != p.shape) {
      const std::string file = reader.files().at(info->file).string();
      fail("tensor '{}' in {}: shape [{}], expected [{}]", name, file, fmt::join(info->shape, ", "),
           fmt::join(p.shape, ", "));
    }
    reader.read_f32_into(name, params.subspan(p.offset, p.size));
    require_finite(params.subspan(p.offset, p.size), name, reader.files().at(info->file).string());
    used.insert(name);
  }
  // A tied model (no lm_head in the layout) may carry a stray lm_head.weight: ignored, as
  // transformers does.
  used.insert("lm_head.weight");
  require_no_unused_tensors(reader, used);
}

std::optional<NonFiniteTensor> find_non_finite(const ParameterLayout& layout,
                                               std::span<const float> params) {
  require(params.size() == layout.total(),
          "find_non_finite: buffer of {} elements, the layout "
          "needs {}",
          params.size(), layout.total());
  for (const ParameterInfo& p : layout.params())
    if (const auto bad = find_non_finite(params.subspan(p.offset, p.size)))
      return NonFiniteTensor{p.name, *bad};
  return std::nullopt;
}

std::vector<float> load_parameters(const std::filesystem::path& model_dir,
                                   const ParameterLayout& layout) {
  std::vector<float> params(layout.total());
  load_parameters(SafetensorsReader::open(model_dir), layout, params);
  return params;
}

}  // namespace anchorctx::model
