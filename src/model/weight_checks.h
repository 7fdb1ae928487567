// Checks every weight loader runs (training's load_parameters, inference's load_llama_weights):
// a model file must hold exactly the tensors its config calls for, each finite. A file with
// more layers than its config, or a NaN left by a diverged run, used to load without a word.
#pragma once

#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "anchorctx/model/parameters.h"
#include "anchorctx/model/safetensors.h"

namespace anchorctx::model {

// How many of `values` are NaN or infinite and the first of them; nullopt when all are finite.
// One branch-free pass over the bits (vectorised) when they are: about the cost of reading the
// values once more from cache.
std::optional<NonFiniteValues> find_non_finite(std::span<const float> values);

// Throws anchorctx::Error naming the tensor, its file, the first non-finite element (index and
// value) and how many there are, unless every value is finite.
void require_finite(std::span<const float> values, std::string_view tensor,
                    std::string_view source);

// Throws anchorctx::Error naming the tensors of `reader` that are not in `used` (up to a few,
// and how many), unless there are none. Buffers transformers itself recomputes and skips
// (`*.rotary_emb.inv_freq`) are allowed.
void require_no_unused_tensors(const SafetensorsReader& reader, const std::set<std::string>& used);

// The name under which `reader` holds the tensor a config calls `name`: `name` itself, except
// that a tied model (`tied`) whose file has no model.embed_tokens.weight but an lm_head.weight
// holds its one matrix there (transformers fills the embedding from it).
std::string stored_tensor_name(const SafetensorsReader& reader, const std::string& name, bool tied);

}  // namespace anchorctx::model
