// `anchorctx inspect`: what a packed dataset holds, whether it is intact, and how much of the
// attention each mask would compute on it.
#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"
#include "anchorctx/core/error.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/tokenizer.h"
#include "cli/commands.h"

namespace anchorctx::cli {
namespace {

namespace attn = anchorctx::attention;

struct Args {
  std::string dir;
  bool json = false;
  std::int64_t window = -1;
  bool decode = false;
  bool no_verify = false;
  std::string tokenizer;  // overrides meta.json's tokenizer spec for --decode
};

// The anchor tokens each window's attention layout treats as visible to all: the shared anchor
// only. In per_doc mode every document's own anchor is inside the document (intra-document
// attention already sees it), and `none` has none.
std::int32_t layout_anchor_len(data::AnchorMode mode) {
  return mode == data::AnchorMode::shared ? 1 : 0;
}

struct Totals {
  std::uint64_t documents = 0;
  std::uint64_t min_docs = UINT64_MAX, max_docs = 0;
  std::map<int, std::uint64_t> histogram;  // log2 bucket -> documents
  std::map<attn::MaskKind, std::int64_t> pairs;
};

void accumulate(const data::Dataset& ds, Totals& t) {
  const std::int32_t len = ds.seq_len();  // attention runs over the inputs, not the labels
  const std::int32_t anchor_len = layout_anchor_len(ds.anchor_mode());
  const bool shared = ds.anchor_mode() == data::AnchorMode::shared;
  const bool per_doc = ds.anchor_mode() == data::AnchorMode::per_doc;
  const std::uint64_t group =
      std::max<std::uint64_t>(1, (1u << 30) / static_cast<std::uint64_t>(len));
  std::vector<std::int32_t> cu_seqlens, cu_docs, starts, anchors;
  for (std::uint64_t first = 0; first < ds.num_windows(); first += group) {
    const std::uint64_t last = std::min(ds.num_windows(), first + group);
    cu_seqlens.assign(1, 0);
    cu_docs.assign(1, 0);
    starts.clear();
    anchors.clear();
    for (std::uint64_t i = first; i < last; ++i) {
      const auto s = ds.doc_starts(i);
      for (std::size_t k = 0; k < s.size(); ++k) {
        const std::uint32_t end =
            k + 1 < s.size() ? s[k + 1] : static_cast<std::uint32_t>(ds.window_len());
        if (static_cast<std::int32_t>(s[k]) < len)
          starts.push_back(static_cast<std::int32_t>(s[k]));
        if (shared && k == 0) continue;  // the anchor is not a document
        std::uint32_t n = end - s[k];
        if (per_doc && n > 0) --n;
        if (n == 0) continue;
        ++t.histogram[std::bit_width(n) - 1];
      }
      const std::uint64_t docs = s.size() - (shared ? 1 : 0);
      t.documents += docs;
      t.min_docs = std::min(t.min_docs, docs);
      t.max_docs = std::max(t.max_docs, docs);
      cu_seqlens.push_back(cu_seqlens.back() + len);
      cu_docs.push_back(static_cast<std::int32_t>(starts.size()));
      anchors.push_back(anchor_len);
    }
    const auto layout = attn::AttentionLayout::from_arrays(cu_seqlens, cu_docs, starts, anchors);
    for (const auto m : {attn::MaskKind::causal, attn::MaskKind::intra_doc, attn::MaskKind::anchor})
      t.pairs[m] += layout.visible_pairs(m);
  }
}

void run(const Args& a) {
  const data::Dataset ds = data::Dataset::open(a.dir);
  if (!a.no_verify) ds.verify();
  Totals t;
  accumulate(ds, t);
  const std::uint64_t n = ds.num_windows();
  nlohmann::json j;
  j["path"] = a.dir;
  j["valid"] = !a.no_verify;
  j["windows"] = n;
  j["tokens"] = n * static_cast<std::uint64_t>(ds.window_len());
  j["seq_len"] = ds.seq_len();
  j["documents"] = t.documents;
  j["anchor_mode"] = std::string(data::to_string(ds.anchor_mode()));
  j["batch_size"] = ds.batch_size();
  j["batches"] = ds.num_batches();
  j["tokenizer"] = ds.meta().value("tokenizer", nlohmann::json::object());
  j["documents_per_window"] = {{"min", n ? t.min_docs : 0},
                               {"max", t.max_docs},
                               {"mean", n ? static_cast<double>(t.documents) / n : 0.0}};
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& [bucket, count] : t.histogram)
    hist.push_back({{"min", 1ull << bucket}, {"max", (2ull << bucket) - 1}, {"count", count}});
  j["doc_length_histogram"] = hist;
  const double causal = static_cast<double>(t.pairs[attn::MaskKind::causal]);
  for (const auto m : {attn::MaskKind::causal, attn::MaskKind::intra_doc, attn::MaskKind::anchor}) {
    const std::string name(attn::to_string(m));
    j["visible_pairs"][name] = t.pairs[m];
    j["visible_fraction"][name] = causal > 0 ? static_cast<double>(t.pairs[m]) / causal : 0.0;
  }
  j["skipped_lines"] = ds.meta().value("skipped_lines", nlohmann::json::object());

  if (a.window >= 0) {
    const auto i = static_cast<std::uint64_t>(a.window);
    require(i < n, "--window {}: the dataset has {} windows", a.window, n);
    const auto tokens = ds.tokens(i);
    const auto starts = ds.doc_starts(i);
    const auto spans = ds.loss_spans(i);
    nlohmann::json w;
    w["index"] = i;
    w["physical"] = ds.physical(i);
    w["doc_starts"] = std::vector<std::uint32_t>(starts.begin(), starts.end());
    w["loss_spans"] = std::vector<std::uint32_t>(spans.begin(), spans.end());
    w["tokens"] = tokens;
    if (a.decode) {
      // Dataset::open checked that a recorded tokenizer is an object of strings; one packed
      // without a record (older or other writers) needs --tokenizer.
      const nlohmann::json none = nlohmann::json::object();
      const auto recorded = ds.meta().find("tokenizer");
      const nlohmann::json& tok_meta = recorded != ds.meta().end() ? *recorded : none;
      require(!a.tokenizer.empty() || tok_meta.contains("spec"),
              "--decode: {}/meta.json records no tokenizer spec; pass --tokenizer", a.dir);
      const std::string spec =
          a.tokenizer.empty() ? tok_meta["spec"].get<std::string>() : a.tokenizer;
      const auto tok = data::load_tokenizer(spec);
      if (tok_meta.contains("content_hash")) {
        const std::string& want = tok_meta["content_hash"].get_ref<const std::string&>();
        require(tok->content_hash() == want,
                "--decode: tokenizer '{}' has content hash {}, the dataset was packed with {}",
                spec, tok->content_hash(), want);
      }
      nlohmann::json texts = nlohmann::json::array();
      for (std::size_t k = 0; k < starts.size(); ++k) {
        const std::size_t end = k + 1 < starts.size() ? starts[k + 1] : tokens.size();
        texts.push_back(
            tok->decode(std::span<const std::int32_t>(tokens).subspan(starts[k], end - starts[k])));
      }
      w["documents"] = texts;
    }
    j["window"] = w;
  }

  if (a.json) {
    // A window edge may cut a character of a decoded document: its bytes become U+FFFD here
    // (the text output prints them as they are); the strict dump failed with nlohmann's text.
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string out = fmt::format(
      "{}: {}\n  windows {} x {} tokens ({} tokens), {} batches of {}\n  anchor mode {}\n"
      "  documents {} (per window: min {}, mean {:.2f}, max {})\n",
      a.dir, a.no_verify ? "not verified (--no-verify)" : "valid (sizes, offsets, hashes)", n,
      ds.window_len(), j["tokens"].get<std::uint64_t>(), ds.num_batches(), ds.batch_size(),
      j["anchor_mode"].get<std::string>(), t.documents,
      j["documents_per_window"]["min"].get<std::uint64_t>(),
      j["documents_per_window"]["mean"].get<double>(), t.max_docs);
  out += "  visible fraction of causal pairs:";
  for (const auto& [k, v] : j["visible_fraction"].items())
    out += fmt::format(" {} {:.4f}", k, v.get<double>());
  out += "\n  document lengths (tokens):\n";
  std::uint64_t most = 1;
  for (const auto& [b, c] : t.histogram)
    most = std::max(most, c);
  for (const auto& [b, c] : t.histogram)
    out += fmt::format("    {:>8}-{:<8} {:>9} {}\n", 1ull << b, (2ull << b) - 1, c,
                       std::string(static_cast<std::size_t>(40 * c / most), '#'));
  std::fprintf(stderr, "%s", out.c_str());
  if (a.window >= 0) {
    const auto& w = j["window"];
    std::printf("window %s (file position %s)\ndoc_starts %s\nloss_spans %s\n",
                w["index"].dump().c_str(), w["physical"].dump().c_str(),
                w["doc_starts"].dump().c_str(), w["loss_spans"].dump().c_str());
    if (a.decode) {
      for (const auto& d : w["documents"])
        std::printf("---\n%s\n", d.get<std::string>().c_str());
    } else {
      std::printf("tokens %s\n", w["tokens"].dump().c_str());
    }
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Describe and validate a packed dataset folder (sizes, offsets, hashes)");
  cmd->add_option("dir", args->dir, "The dataset folder")->required();
  cmd->add_flag("--json", args->json, "One JSON object on stdout");
  cmd->add_option("--window", args->window, "Show window i (logical, after the shuffle)")
      ->check(CLI::Range(std::int64_t{0}, INT64_MAX));
  cmd->add_flag("--decode", args->decode, "With --window: the text of each document");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Tokenizer for --decode (default: the one recorded in meta.json)");
  cmd->add_flag("--no-verify", args->no_verify, "Skip the full check (hashes, every window)");
  cmd->callback([args]() {
    if (args->decode && args->window < 0) throw CLI::ValidationError("--decode", "needs --window");
    run(*args);
  });
}

}  // namespace anchorctx::cli
