// llama2.c import and float32 inference: a tiny random checkpoint written here, imported and run
// against a double-precision reimplementation of llama2.c's own forward (adjacent-pair RoPE on
// the unpermuted weights), which proves the wq/wk permutation; damaged checkpoints; and, with
// ../shared/data, the real stories260K model generating exactly the text llama2.c's tests expect.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/generation.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/model/llama_weights.h"
#include "support/llama2c_tokenizer.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::model {
namespace {

using test::TempDir;

// ---- a tiny llama2.c checkpoint, in llama2.c's layout ----

struct TinyLlama2c {
  std::int32_t dim = 32, hidden_dim = 48, n_layers = 2, n_heads = 4, n_kv_heads = 2,
               vocab_size = 32, seq_len = 16;
  bool shared_classifier = true;
  std::int32_t head_dim() const { return dim / n_heads; }
  std::int32_t kv_dim() const { return n_kv_heads * head_dim(); }

  // The tensors in file order, row-major, as llama2.c stores them.
  std::vector<float> embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;

  explicit TinyLlama2c(bool shared, std::uint32_t seed = 7) : shared_classifier(shared) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> weight(-0.3f, 0.3f), norm(0.5f, 1.5f);
    const auto fill = [&](std::size_t n, auto& dist) {
      std::vector<float> v(n);
      for (float& x : v)
        x = dist(rng);
      return v;
    };
    const std::size_t d = dim, h = hidden_dim, l = n_layers, kv = kv_dim(), V = vocab_size;
    embedding = fill(V * d, weight);
    rms_att = fill(l * d, norm);
    wq = fill(l * d * d, weight);
    wk = fill(l * kv * d, weight);
    wv = fill(l * kv * d, weight);
    wo = fill(l * d * d, weight);
    rms_ffn = fill(l * d, norm);
    w1 = fill(l * h * d, weight);
    w2 = fill(l * d * h, weight);
    w3 = fill(l * h * d, weight);
    rms_final = fill(d, norm);
    if (!shared_classifier) wcls = fill(V * d, weight);
  }

  std::string bytes() const {
    std::string out;
    const auto put_i32 = [&](std::int32_t v) {
      out.append(reinterpret_cast<const char*>(&v), sizeof v);
    };
    const auto put = [&](const std::vector<float>& v) {
      out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    };
    for (const std::int32_t v : {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
                                 shared_classifier ? vocab_size : -vocab_size, seq_len})
      put_i32(v);
    for (const auto* t :
         {&embedding, &rms_att, &wq, &wk, &wv, &wo, &rms_ffn, &w1, &w2, &w3, &rms_final})
      put(*t);
    // The RoPE tables, which readers skip: filled with garbage to prove it.
    put(std::vector<float>(static_cast<std::size_t>(seq_len * head_dim() / 2) * 2, 123.0f));
    if (!shared_classifier) put(wcls);
    return out;
  }
};

using test::llama2c_tokenizer_file;
using test::tiny_llama2c_tokenizer_bytes;

// ---- llama2.c's forward (run.c), reimplemented in double on the unpermuted weights ----

class ReferenceLlama2c {
 public:
  explicit ReferenceLlama2c(const TinyLlama2c& m) : m_(m) {
    key_cache_.resize(static_cast<std::size_t>(m.n_layers));
    value_cache_.resize(static_cast<std::size_t>(m.n_layers));
  }

  // The logits after feeding `token` at the next position.
  std::vector<double> step(std::int32_t token) {
    const std::size_t d = m_.dim, h = m_.hidden_dim, kv = m_.kv_dim(), hs = m_.head_dim();
    std::vector<double> x(d);
    for (std::size_t i = 0; i < d; ++i)
      x[i] = m_.embedding[static_cast<std::size_t>(token) * d + i];
    for (std::size_t l = 0; l < static_cast<std::size_t>(m_.n_layers); ++l) {
      std::vector<double> xb = rmsnorm(x, &m_.rms_att[l * d]);
      std::vector<double> q = matvec(&m_.wq[l * d * d], xb, d);
      std::vector<double> k = matvec(&m_.wk[l * kv * d], xb, kv);
      std::vector<double> v = matvec(&m_.wv[l * kv * d], xb, kv);
      // llama2.c's RoPE: adjacent pairs (i, i + 1), frequency from i within the head.
      for (std::size_t i = 0; i < d; i += 2) {
        const double freq = 1.0 / std::pow(10000.0, static_cast<double>(i % hs) / hs);
        const double angle = static_cast<double>(pos_) * freq;
        const double c = std::cos(angle), s = std::sin(angle);
        rotate(q, i, c, s);
        if (i < kv) rotate(k, i, c, s);
      }
      key_cache_[l].push_back(k);
      value_cache_[l].push_back(v);
      std::vector<double> att_out(d, 0.0);
      const std::size_t group = static_cast<std::size_t>(m_.n_heads / m_.n_kv_heads);
      for (std::size_t head = 0; head < static_cast<std::size_t>(m_.n_heads); ++head) {
        const std::size_t kv_off = (head / group) * hs;
        std::vector<double> scores(pos_ + 1);
        for (std::size_t t = 0; t <= pos_; ++t) {
          double dot = 0.0;
          for (std::size_t i = 0; i < hs; ++i)
            dot += q[head * hs + i] * key_cache_[l][t][kv_off + i];
          scores[t] = dot / std::sqrt(static_cast<double>(hs));
        }
        double max = scores[0], sum = 0.0;
        for (const double s : scores)
          max = std::max(max, s);
        for (double& s : scores)
          sum += (s = std::exp(s - max));
        for (std::size_t t = 0; t <= pos_; ++t)
          for (std::size_t i = 0; i < hs; ++i)
            att_out[head * hs + i] += scores[t] / sum * value_cache_[l][t][kv_off + i];
      }
      const std::vector<double> o = matvec(&m_.wo[l * d * d], att_out, d);
      for (std::size_t i = 0; i < d; ++i)
        x[i] += o[i];
      xb = rmsnorm(x, &m_.rms_ffn[l * d]);
      std::vector<double> g = matvec(&m_.w1[l * h * d], xb, h);
      const std::vector<double> u = matvec(&m_.w3[l * h * d], xb, h);
      for (std::size_t i = 0; i < h; ++i)
        g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const std::vector<double> down = matvec(&m_.w2[l * d * h], g, d);
      for (std::size_t i = 0; i < d; ++i)
        x[i] += down[i];
    }
    ++pos_;
    const std::vector<double> xf = rmsnorm(x, m_.rms_final.data());
    return matvec(m_.shared_classifier ? m_.embedding.data() : m_.wcls.data(), xf,
                  static_cast<std::size_t>(m_.vocab_size));
  }

 private:
  std::vector<double> rmsnorm(const std::vector<double>& x, const float* w) const {
    double ss = 0.0;
    for (const double v : x)
      ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + 1e-5);
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      out[i] = w[i] * (x[i] * scale);
    return out;
  }
  static std::vector<double> matvec(const float* w, const std::vector<double>& x,
                                    std::size_t rows) {
    std::vector<double> out(rows, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < x.size(); ++c)
        out[r] += w[r * x.size() + c] * x[c];
    return out;
  }
  static void rotate(std::vector<double>& v, std::size_t i, double c, double s) {
    const double a = v[i], b = v[i + 1];
    v[i] = a * c - b * s;
    v[i + 1] = a * s + b * c;
  }

  const TinyLlama2c& m_;
  std::size_t pos_ = 0;
  std::vector<std::vector<std::vector<double>>> key_cache_, value_cache_;  // [layer][pos][kv]
};

// Imports `m` through the model folder (config.json + model.safetensors) and checks the float32
// HuggingFace-layout inference against the llama2.c reference, position by position.
void expect_matches_reference(const TinyLlama2c& m) {
  TempDir dir;
  const std::string checkpoint = dir.write("model.bin", m.bytes());
  const std::string tokenizer = dir.write("tok.bin", tiny_llama2c_tokenizer_bytes(m.vocab_size));
  const std::filesystem::path out = dir.path() / "model";
  const LlamaConfig written = import_llama2c(checkpoint, llama2c_tokenizer_file(tokenizer), out);
  EXPECT_EQ(written.tie_word_embeddings, m.shared_classifier);

  LlamaModel model = load_llama_model(out);
  EXPECT_EQ(model.config, written);
  EXPECT_EQ(model.config.hidden_size, m.dim);
  EXPECT_EQ(model.config.num_key_value_heads, m.n_kv_heads);
  EXPECT_EQ(model.config.max_position_embeddings, m.seq_len);
  EXPECT_DOUBLE_EQ(model.config.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(model.config.rope_theta, 10000.0);
  EXPECT_EQ(model.config.bos_token_id, 1);
  EXPECT_EQ(model.weights.lm_head.empty(), m.shared_classifier);
  EXPECT_TRUE(std::filesystem::exists(out / "tokenizer.bin"));

  LlamaInference inference(std::move(model));
  ReferenceLlama2c reference(m);
  const std::vector<std::int32_t> tokens = {1, 5, 17, 3, 30, 9, 9, 22, 4, 11, 2, 8};
  for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
    const std::span<const float> got = inference.step(tokens[pos]);
    const std::vector<double> want = reference.step(tokens[pos]);
    ASSERT_EQ(got.size(), want.size());
    double max_err = 0.0, max_abs = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      max_err = std::max(max_err, std::abs(got[i] - want[i]));
      max_abs = std::max(max_abs, std::abs(want[i]));
    }
    EXPECT_LT(max_err, 1e-4 * std::max(1.0, max_abs)) << "position " << pos;
  }
}

TEST(Llama2cImport, TiedModelMatchesLlama2cForward) {
  expect_matches_reference(TinyLlama2c(true));
}

TEST(Llama2cImport, UntiedClassifierMatchesLlama2cForward) {
  expect_matches_reference(TinyLlama2c(false, 11));
}

TEST(Llama2cImport, PermutesRotaryRowsWithinEachHead) {
  // Two heads of head_dim 4, one column: row r holds the value 10 * head + r.
  std::vector<float> w = {0, 1, 2, 3, 10, 11, 12, 13};
  permute_rotary_rows(w, 2, 4, 1);
  // Row 2i -> i, row 2i + 1 -> i + 2.
  EXPECT_EQ(w, (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
  EXPECT_THROW(permute_rotary_rows(w, 2, 3, 1), Error);
  EXPECT_THROW(permute_rotary_rows(w, 3, 4, 1), Error);
}

TEST(Llama2cImport, ReadsHuggingFaceNamesAndShapes) {
  TempDir dir;
  const TinyLlama2c m(false);
  const Llama2cCheckpoint c = read_llama2c_checkpoint(dir.write("m.bin", m.bytes()));
  EXPECT_FALSE(c.header.shared_classifier);
  EXPECT_EQ(c.header.vocab_size, 32);
  ASSERT_EQ(c.tensors.size(), 1u + 9u * 2u + 2u);
  EXPECT_EQ(c.tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(c.tensors[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(c.tensors[3].shape, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(c.tensors[8].name, "model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(c.tensors[8].data, std::vector<float>(m.w3.begin(), m.w3.begin() + 48 * 32));
  EXPECT_EQ(c.tensors.back().name, "lm_head.weight");
  EXPECT_EQ(c.tensors.back().data, m.wcls);
}

// Expects read_llama2c_checkpoint to fail on `bytes` with a message naming the file and
// containing `fragment`.
void expect_bad_checkpoint(const std::string& bytes, const std::string& fragment) {
  TempDir dir;
  const std::string path = dir.write("bad.bin", bytes);
  try {
    read_llama2c_checkpoint(path);
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

std::string with_header_value(std::string bytes, int index, std::int32_t value) {
  std::memcpy(bytes.data() + 4 * index, &value, 4);
  return bytes;
}

TEST(Llama2cImport, RejectsDamagedCheckpoints) {
  const std::string good = TinyLlama2c(true).bytes();
  expect_bad_checkpoint(good.substr(0, 20), "shorter than the 28-byte header");
  expect_bad_checkpoint(good.substr(0, good.size() - 4), "(truncated?)");
  expect_bad_checkpoint(good + "xxxx", "not a legacy llama2.c export");
  expect_bad_checkpoint(with_header_value(good, 0, -32), "header dim = -32 is out of range");
  expect_bad_checkpoint(with_header_value(good, 2, 0), "header n_layers = 0");
  expect_bad_checkpoint(with_header_value(good, 4, 3), "not a multiple of n_kv_heads 3");
  expect_bad_checkpoint(with_header_value(good, 5, 0), "vocab_size = 0 is invalid");
  expect_bad_checkpoint(with_header_value(good, 5, INT32_MIN), "is invalid");
  expect_bad_checkpoint(with_header_value(good, 6, -1), "header seq_len = -1");
  expect_bad_checkpoint(with_header_value(good, 3, 5), "dim 32 is not a multiple of n_heads 5");
  // Huge sizes must not overflow into a "matching" size.
  expect_bad_checkpoint(with_header_value(good, 0, INT32_MAX), "out of range");
  // An unshared classifier needs vocab * dim more floats than this file has.
  expect_bad_checkpoint(with_header_value(good, 5, -32), "(truncated?)");
  expect_bad_checkpoint(with_header_value(good, 0, 0x616b3432), "versioned export");
  EXPECT_THROW(read_llama2c_checkpoint("/nonexistent/model.bin"), Error);
  // A NaN weight is refused at import, naming the tensor (it used to be imported, and every
  // loader then refused the folder written).
  std::string nan_weight = good;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_weight.data() + 28 + 4 * 5, &nan, 4);
  expect_bad_checkpoint(nan_weight, "tensor 'model.embed_tokens.weight' in ");
  expect_bad_checkpoint(nan_weight, "1 non-finite value(s), the first at element 5");
}

TEST(Llama2cImport, RejectsAForeignTokenizerAndAnExistingFolder) {
  TempDir dir;
  const TinyLlama2c m(true);
  const std::string checkpoint = dir.write("model.bin", m.bytes());
  const std::string small = dir.write("small.bin", tiny_llama2c_tokenizer_bytes(31));
  EXPECT_THROW(import_llama2c(checkpoint, llama2c_tokenizer_file(small), dir.path() / "a"), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "a"));
  EXPECT_THROW(import_llama2c(checkpoint, llama2c_tokenizer_file("byte"), dir.path() / "b"), Error);

  const std::string tok = dir.write("tok.bin", tiny_llama2c_tokenizer_bytes(32));
  import_llama2c(checkpoint, llama2c_tokenizer_file(tok), dir.path() / "c");
  EXPECT_THROW(import_llama2c(checkpoint, llama2c_tokenizer_file(tok), dir.path() / "c"), Error);
  import_llama2c(checkpoint, llama2c_tokenizer_file(tok), dir.path() / "c", /*replace=*/true);

  // --force replaces only a folder an import wrote, holding no input (issue 11).
  const auto refusal = [&](const std::filesystem::path& out) -> std::string {
    try {
      import_llama2c(checkpoint, llama2c_tokenizer_file(tok), out, /*replace=*/true);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  dir.write("c/notes.txt", "mine");
  EXPECT_NE(refusal(dir.path() / "c").find("holds 'notes.txt'"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "c" / "notes.txt"));
  EXPECT_NE(refusal(dir.path()).find("holds the input"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(checkpoint));
}

TEST(Generation, GreedyIsArgmaxAndSamplingIsSeeded) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f};
  EXPECT_EQ(argmax(logits), 1);  // the first of equal maxima
  Sampler greedy({.temperature = 0.0f, .top_p = 0.9f, .seed = 3});
  EXPECT_EQ(greedy.sample(logits), 1);

  // A tiny nucleus keeps only the most probable token.
  Sampler nucleus({.temperature = 1.0f, .top_p = 0.01f, .seed = 3});
  const std::vector<float> peaked = {0.0f, 0.0f, 5.0f, 0.0f};
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(nucleus.sample(peaked), 2);

  const auto draws = [&](std::uint64_t seed, float top_p) {
    Sampler s({.temperature = 1.0f, .top_p = top_p, .seed = seed});
    std::vector<std::int32_t> out;
    for (int i = 0; i < 64; ++i)
      out.push_back(s.sample(logits));
    return out;
  };
  EXPECT_EQ(draws(5, 1.0f), draws(5, 1.0f));
  EXPECT_EQ(draws(5, 0.9f), draws(5, 0.9f));
  EXPECT_NE(draws(5, 1.0f), draws(6, 1.0f));
  const std::vector<std::int32_t> all = draws(9, 1.0f);
  EXPECT_NE(std::find(all.begin(), all.end(), 0), all.end());  // every token can come up
  EXPECT_NE(std::find(all.begin(), all.end(), 4), all.end());

  EXPECT_THROW(Sampler({.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.0f, .top_p = 0.0f}), Error);
}

// transformers' TopPLogitsWarper at the boundary: four tokens of 0.25 and top_p 0.5 keep two
// (their mass reaches top_p; "exceeds" kept three), and a token of probability 0 is never drawn,
// not even when rounding leaves the uniform draw above the total (it returned the last id).
TEST(Generation, TopPKeepsTheTokensThatReachItAndNeverAnImpossibleOne) {
  const std::vector<float> four = {0.0f, 0.0f, 0.0f, 0.0f, -1e30f};
  std::set<std::int32_t> seen;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    Sampler s({.temperature = 1.0f, .top_p = 0.5f, .seed = seed});
    seen.insert(s.sample(four));
  }
  EXPECT_EQ(seen, (std::set<std::int32_t>{0, 1}));  // ties by id
  for (const float top_p : {1.0f, 0.9999999f})
    for (std::uint64_t seed = 0; seed < 2000; ++seed) {
      Sampler s({.temperature = 1.0f, .top_p = top_p, .seed = seed});
      EXPECT_NE(s.sample(four), 4) << "top_p " << top_p << " seed " << seed;
    }
}

TEST(Generation, StopsAtEosMaxTokensAndContext) {
  TempDir dir;
  const TinyLlama2c m(true);
  const std::filesystem::path out = dir.path() / "model";
  import_llama2c(dir.write("model.bin", m.bytes()),
                 llama2c_tokenizer_file(dir.write("tok.bin", tiny_llama2c_tokenizer_bytes(32))),
                 out);
  LlamaInference inference(load_llama_model(out));
  const std::vector<std::int32_t> bos = {1};

  GenerateOptions options;
  options.sampling.temperature = 0.0f;
  options.max_new_tokens = 5;
  const GenerateResult five = generate(inference, bos, options);
  EXPECT_EQ(five.tokens.size(), 5u);
  EXPECT_EQ(five.stop, StopReason::max_new_tokens);

  // Whatever greedy picks first, making it the stop id stops before it.
  options.stop_ids = {five.tokens[0]};
  const GenerateResult none = generate(inference, bos, options);
  EXPECT_TRUE(none.tokens.empty());
  EXPECT_EQ(none.stop, StopReason::eos);

  // seq_len 16: bos at position 0, then 16 new tokens (the last one never fed).
  options.stop_ids.clear();
  options.max_new_tokens = 100;
  const GenerateResult full = generate(inference, bos, options);
  EXPECT_EQ(full.tokens.size(), 16u);
  EXPECT_EQ(full.stop, StopReason::context);
  EXPECT_EQ(std::vector<std::int32_t>(full.tokens.begin(), full.tokens.begin() + 5), five.tokens);

  EXPECT_THROW(generate(inference, {}, options), Error);
  EXPECT_THROW(inference.step(32), Error);

  // A sliding window of 10 (inference has none): positions 0..9 attend to every key, so bos and
  // 9 new tokens are fed and a 10th is chosen, the same as without the window.
  LlamaModel windowed = load_llama_model(out);
  windowed.config.model_type = ModelType::mistral;
  windowed.config.sliding_window = 10;
  LlamaInference windowed_inference(std::move(windowed));
  const GenerateResult within = generate(windowed_inference, bos, options);
  EXPECT_EQ(within.stop, StopReason::context);
  EXPECT_EQ(within.tokens,
            std::vector<std::int32_t>(full.tokens.begin(), full.tokens.begin() + 10));
}

// ---- the real model ----

// llama2.c's own test (`run stories260K.bin -z tok512.bin -t 0.0 -n 200`), as
// ../shared/data/README.md gives it.
constexpr const char* kStories260kGreedy200 =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. "
    "She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to "
    "do.\"\n"
    "Lily didn't want to help her mom, so she";

TEST(Llama2cImport, Stories260kGeneratesLlama2cText) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(checkpoint, "stories260k/stories260K.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer_file, "stories260k/tok512.bin");
  TempDir dir;
  const std::filesystem::path out = dir.path() / "stories260K";
  import_llama2c(checkpoint, llama2c_tokenizer_file(tokenizer_file), out);

  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(out.string());
  EXPECT_EQ(tokenizer->kind(), "llama2c");
  LlamaInference inference(load_llama_model(out));
  GenerateOptions options;
  options.max_new_tokens = 200;
  options.sampling.temperature = 0.0f;
  options.stop_ids = {2};
  const std::vector<std::int32_t> prompt = {1};
  const GenerateResult result = generate(inference, prompt, options);
  EXPECT_EQ(result.tokens.size(), 200u);

  std::vector<std::int32_t> ids = prompt;
  ids.insert(ids.end(), result.tokens.begin(), result.tokens.end());
  EXPECT_EQ(tokenizer->decode(ids), kStories260kGreedy200);
}

}  // namespace
}  // namespace anchorctx::model
