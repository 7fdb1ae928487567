// The ppl task: samples cut from a document stream, doubling position buckets, and the loss the
// task reports equal to the training forward's on the same windows under each mask.
#include "anchorctx/eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer.h"
#include "eval/eval_test_models.h"

namespace anchorctx::eval {
namespace {

TEST(Perplexity, BucketsDouble) {
  using B = std::vector<std::pair<std::int64_t, std::int64_t>>;
  EXPECT_EQ(position_buckets(100), (B{{0, 100}}));
  EXPECT_EQ(position_buckets(128), (B{{0, 128}}));
  EXPECT_EQ(position_buckets(1000), (B{{0, 128}, {128, 256}, {256, 512}, {512, 1000}}));
}

TEST(Perplexity, SamplesFromDocumentsKeepStarts) {
  const std::vector<std::vector<std::int32_t>> docs = {{1, 5, 6}, {1, 7, 8, 9, 10}, {1, 11}};
  const std::vector<PplSample> s = samples_from_documents(docs, 3, 5);  // windows of 4
  ASSERT_EQ(s.size(), 2u);                                              // 10 tokens
  EXPECT_EQ(s[0].tokens, (std::vector<std::int32_t>{1, 5, 6, 1}));
  EXPECT_EQ(s[0].doc_starts, (std::vector<std::uint32_t>{0, 3}));
  EXPECT_EQ(s[1].tokens, (std::vector<std::int32_t>{7, 8, 9, 10}));
  EXPECT_EQ(s[1].doc_starts, (std::vector<std::uint32_t>{0}));  // the cut document's rest
  EXPECT_EQ(samples_from_documents(docs, 3, 1).size(), 1u);
}

// The task's summed loss on each cut = LlamaTrainModel::forward's loss on the same window, for
// each mask; buckets add up to the total; shorter cuts are prefixes.
// A tokenizer with the special ids asked for (GPT-2's tokenizer.json has eos only).
class SpecialIdsTokenizer final : public data::Tokenizer {
 public:
  SpecialIdsTokenizer(std::optional<std::int32_t> bos, std::optional<std::int32_t> eos)
      : bos_(bos), eos_(eos) {}
  std::vector<std::int32_t> encode(std::string_view text) const override {
    return std::vector<std::int32_t>(text.begin(), text.end());
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    return std::string(ids.begin(), ids.end());
  }
  std::int32_t vocab_size() const override { return 300; }
  std::optional<std::int32_t> bos_id() const override { return bos_; }
  std::optional<std::int32_t> eos_id() const override { return eos_; }
  std::optional<std::int32_t> pad_id() const override { return std::nullopt; }
  std::string kind() const override { return "test"; }
  std::string content_hash() const override { return "test"; }

 private:
  std::optional<std::int32_t> bos_, eos_;
};

// Each document of a text source opens with pack's anchor: bos, else eos (a tokenizer without
// bos joined the documents with nothing between them), else nothing.
TEST(Perplexity, DocumentsOpenWithPacksAnchorToken) {
  const std::vector<std::int32_t> ids = {65, 66, 67};
  using V = std::vector<std::int32_t>;
  EXPECT_EQ(ppl_document(SpecialIdsTokenizer(1, 2), ids), (V{1, 65, 66, 67}));
  EXPECT_EQ(ppl_document(SpecialIdsTokenizer(std::nullopt, 2), ids), (V{2, 65, 66, 67}));
  EXPECT_EQ(ppl_document(SpecialIdsTokenizer(std::nullopt, std::nullopt), ids), ids);
  EXPECT_EQ(ppl_document(*data::make_byte_tokenizer(), ids), (V{256, 65, 66, 67}));
  for (const auto& [bos, eos] :
       {std::pair<std::optional<std::int32_t>, std::optional<std::int32_t>>{1, 2},
        {std::nullopt, 2},
        {std::nullopt, std::nullopt}})
    EXPECT_EQ(data::default_anchor_id(SpecialIdsTokenizer(bos, eos)), bos ? bos : eos);
  // Two documents without bos: eos between them, where the windows are cut.
  const std::vector<PplSample> windows =
      samples_from_documents({ppl_document(SpecialIdsTokenizer(std::nullopt, 2), ids),
                              ppl_document(SpecialIdsTokenizer(std::nullopt, 2), ids)},
                             7, 1);
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].tokens, (V{2, 65, 66, 67, 2, 65, 66, 67}));
  EXPECT_EQ(windows[0].doc_starts, (std::vector<std::uint32_t>{0, 4}));
}

TEST(Perplexity, EqualsTrainingLossOnTheSameWindows) {
  const model::LlamaConfig config = eval_test::tiny_config();
  model::LlamaTrainModel train(config, {});
  model::init_parameters(train.layout(), config, 11, train.params());
  const model::LlamaModel weights =
      eval_test::model_from_params(config, train.layout(), train.params());
  std::vector<std::vector<std::int32_t>> docs;
  for (int d = 0; d < 12; ++d) {
    std::vector<std::int32_t> doc = {1};
    for (int i = 0; i < 40 + 17 * d; ++i)
      doc.push_back(3 + (d * 31 + i * (d + 3)) % 45);
    docs.push_back(doc);
  }
  const std::vector<PplSample> samples = samples_from_documents(docs, 300, 3);
  ASSERT_EQ(samples.size(), 3u);
  Prefill prefill(weights);
  struct Case {
    attention::MaskKind mask;
    rope::PositionPolicy positions;
    data::AnchorMode anchor;
  };
  for (const Case c :
       {Case{attention::MaskKind::causal, rope::PositionPolicy::global, data::AnchorMode::none},
        Case{attention::MaskKind::intra_doc, rope::PositionPolicy::reset, data::AnchorMode::none},
        Case{attention::MaskKind::anchor, rope::PositionPolicy::anchor,
             data::AnchorMode::shared}}) {
    PplOptions options;
    options.lengths = {150, 300};
    options.mask = c.mask;
    options.positions = c.positions;
    options.anchor_mode = c.anchor;
    int calls = 0;
    const std::vector<PplResult> results =
        evaluate_ppl(prefill, samples, options, [&] { ++calls; });
    EXPECT_EQ(calls, 6);
    ASSERT_EQ(results.size(), 2u);
    for (const PplResult& r : results) {
      double expected = 0.0;
      std::int64_t tokens = 0;
      for (const PplSample& s : samples) {
        const train::RawWindow w{
            std::span<const std::int32_t>(s.tokens).first(static_cast<std::size_t>(r.length) + 1),
            s.doc_starts, s.loss_spans};
        const train::Batch batch =
            train::make_batch({&w, 1}, c.anchor, {c.mask, c.positions, false});
        const model::LossSum loss = train.forward(batch.view());
        expected += loss.loss;
        tokens += loss.tokens;
      }
      EXPECT_EQ(r.total.tokens, tokens);
      EXPECT_NEAR(r.total.loss, expected, 1e-5 * expected) << attention::to_string(c.mask);
      double bucket_sum = 0.0;
      std::int64_t bucket_tokens = 0;
      for (const PplBucket& b : r.buckets) {
        bucket_sum += b.tally.loss;
        bucket_tokens += b.tally.tokens;
      }
      EXPECT_NEAR(bucket_sum, r.total.loss, 1e-9 * r.total.loss);
      EXPECT_EQ(bucket_tokens, r.total.tokens);
      EXPECT_EQ(r.sample_mean.size(), 3u);
      EXPECT_GT(r.total.ppl(), 1.0);
    }
  }
  PplOptions too_long;
  too_long.lengths = {301};
  EXPECT_THROW(evaluate_ppl(prefill, samples, too_long), Error);
}

}  // namespace
}  // namespace anchorctx::eval
