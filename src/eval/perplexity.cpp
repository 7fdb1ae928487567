#include "anchorctx/eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "anchorctx/core/error.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/train/batch.h"

namespace anchorctx::eval {

double LossTally::mean() const {
  return tokens > 0 ? loss / static_cast<double>(tokens) : std::numeric_limits<double>::quiet_NaN();
}

double LossTally::ppl() const {
  return std::exp(mean());
}

std::vector<std::int32_t> ppl_document(const data::Tokenizer& tokenizer,
                                       std::span<const std::int32_t> ids) {
  std::vector<std::int32_t> doc;
  doc.reserve(ids.size() + 1);
  if (const std::optional<std::int32_t> start = data::default_anchor_id(tokenizer))
    doc.push_back(*start);
  doc.insert(doc.end(), ids.begin(), ids.end());
  return doc;
}

std::vector<PplSample> samples_from_documents(
    const std::vector<std::vector<std::int32_t>>& documents, std::int64_t length,
    std::int64_t count) {
  require(length >= 1 && count >= 1, "ppl: length {} and count {} must be positive", length, count);
  const std::size_t window = static_cast<std::size_t>(length) + 1;
  std::vector<PplSample> out;
  PplSample current;
  for (const std::vector<std::int32_t>& doc : documents) {
    std::size_t used = 0;
    while (used < doc.size()) {
      if (used == 0)
        current.doc_starts.push_back(static_cast<std::uint32_t>(current.tokens.size()));
      const std::size_t take = std::min(doc.size() - used, window - current.tokens.size());
      current.tokens.insert(current.tokens.end(), doc.begin() + static_cast<std::ptrdiff_t>(used),
                            doc.begin() + static_cast<std::ptrdiff_t>(used + take));
      used += take;
      if (current.tokens.size() == window) {
        // A window starting mid-document still starts a (partial) document at 0.
        if (current.doc_starts.empty() || current.doc_starts.front() != 0)
          current.doc_starts.insert(current.doc_starts.begin(), 0);
        out.push_back(std::move(current));
        current = {};
        if (static_cast<std::int64_t>(out.size()) == count) return out;
      }
    }
  }
  return out;
}

std::vector<PplSample> samples_from_dataset(const data::Dataset& dataset, std::int64_t length,
                                            std::int64_t count) {
  if (length > dataset.seq_len())
    fail("ppl: length {} is longer than the dataset's windows ({} tokens, {})", length,
         dataset.seq_len(), dataset.path().string());
  std::vector<PplSample> out;
  const std::uint64_t n =
      std::min<std::uint64_t>(dataset.num_windows(), static_cast<std::uint64_t>(count));
  for (std::uint64_t i = 0; i < n; ++i) {
    PplSample s;
    s.tokens = dataset.tokens(i);
    const auto starts = dataset.doc_starts(i);
    const auto spans = dataset.loss_spans(i);
    s.doc_starts.assign(starts.begin(), starts.end());
    s.loss_spans.assign(spans.begin(), spans.end());
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::pair<std::int64_t, std::int64_t>> position_buckets(std::int64_t length) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  std::int64_t begin = 0, end = 128;
  while (begin < length) {
    out.emplace_back(begin, std::min(end, length));
    begin = end;
    end *= 2;
  }
  return out;
}

std::vector<PplResult> evaluate_ppl(Prefill& prefill, const std::vector<PplSample>& samples,
                                    const PplOptions& options,
                                    const std::function<void()>& on_sample) {
  require(!options.lengths.empty(), "ppl: no lengths");
  for (const std::int64_t length : options.lengths)
    for (std::size_t i = 0; i < samples.size(); ++i)
      if (length < 1 || static_cast<std::int64_t>(samples[i].tokens.size()) < length + 1)
        fail("ppl: sample {} holds {} tokens, too few for length {}", i, samples[i].tokens.size(),
             length);
  const train::BatchOptions batch_options{options.mask, options.positions,
                                          options.mask_doc_boundaries};
  std::vector<PplResult> results;
  for (const std::int64_t length : options.lengths) {
    PplResult r;
    r.length = length;
    for (const auto& [b, e] : position_buckets(length))
      r.buckets.push_back({b, e, {}});
    for (const PplSample& s : samples) {
      // The cut: make_batch ignores document starts and spans past the window's end.
      const train::RawWindow window{
          std::span<const std::int32_t>(s.tokens).first(static_cast<std::size_t>(length) + 1),
          s.doc_starts, s.loss_spans};
      const train::Batch batch =
          train::make_batch({&window, 1}, options.anchor_mode, batch_options);
      PrefillRequest request;
      request.input_ids = batch.input_ids;
      request.position_ids = batch.position_ids;
      request.plan = &batch.plan;
      request.targets = batch.targets;
      const PrefillResult out = prefill.run(request);
      LossTally sample;
      std::size_t bucket = 0;
      for (std::int64_t t = 0; t < length; ++t) {
        while (t >= r.buckets[bucket].end)
          ++bucket;
        const double loss = out.token_loss[static_cast<std::size_t>(t)];
        if (std::isnan(loss)) continue;
        sample.loss += loss;
        ++sample.tokens;
        r.buckets[bucket].tally.loss += loss;
        ++r.buckets[bucket].tally.tokens;
      }
      r.total.loss += sample.loss;
      r.total.tokens += sample.tokens;
      r.sample_mean.push_back(sample.mean());
      if (on_sample) on_sample();
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace anchorctx::eval
