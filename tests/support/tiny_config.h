// One tiny model for the tests that train, run or convert a whole model: small enough that a
// forward and backward take milliseconds, with grouped-query attention (4 heads over 2 kv heads).
#pragma once

#include "anchorctx/model/config.h"

namespace anchorctx::test {

// The `tiny` preset (the byte tokenizer's 259 ids) shrunk to 2 layers of width 32.
inline model::LlamaConfig tiny_config() {
  model::LlamaConfig c = model::preset("tiny");
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  return c;
}

}  // namespace anchorctx::test
