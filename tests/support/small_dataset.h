// A few built-in documents packed into windows of 64 tokens (or `seq_len`): the small dataset the
// trainer's end-to-end tests (run report, run tokenizer, multi-process runs) train on.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"

namespace anchorctx::test {

// Writes dir/corpus.jsonl (20 short documents) and packs it into dir/data with `tokenizer`;
// returns dir/data.
inline std::filesystem::path pack_small_corpus(const std::filesystem::path& dir,
                                               const std::string& tokenizer = "byte",
                                               int seq_len = 64) {
  data::BuiltinCorpusOptions corpus;
  corpus.documents = 20;
  corpus.median_chars = 120;
  corpus.min_chars = 20;
  corpus.max_chars = 300;
  std::string jsonl;
  for (const std::string& d : data::builtin_corpus(corpus))
    jsonl += nlohmann::json{{"text", d}}.dump() + "\n";
  std::ofstream(dir / "corpus.jsonl") << jsonl;
  data::PackConfig pack;
  pack.inputs = {(dir / "corpus.jsonl").string()};
  pack.out = (dir / "data").string();
  pack.tokenizer = tokenizer;
  pack.seq_len = seq_len;
  pack.quiet = true;
  pack.threads = 1;
  data::pack_dataset(pack);
  return dir / "data";
}

}  // namespace anchorctx::test
