// pack_dataset: the whole `anchorctx pack` pipeline as a library call: read documents, tokenize
// them in parallel, pack them into windows and write the dataset folder.
//
// A pipeline of blocks of documents (kPackBlockBytes of text each): one thread reads and parses
// blocks, `threads` workers tokenize them, and the calling thread packs and writes them in
// reading order, so documents keep their order whatever the thread count or timing. At most
// threads + 2 blocks are in flight: memory is bounded by (threads + 2) x (4 MiB of text + its
// token ids at 4 bytes each), i.e. about 80 MiB with 2 threads and the byte tokenizer, plus each
// worker's tokenizer working memory on one piece (1 MiB of text), 4 MiB of write buffers per
// output file, and 8 bytes per window for the shuffle order: a constant, whatever the size of
// the input or of its documents. A long document never sits whole: a text file is read in
// kPackTextPartBytes parts (and a longer JSONL text is taken as one part), the reading thread
// cuts them at the tokenizer's safe cuts (StreamCutter), the pieces are encoded like any block
// item, and the packer takes the document's ids piece by piece (Packer::begin_document). What
// stays whole: a JSONL line's text (the reader's line), a pre-tokenized row, the interleave
// group when interleaving (4096 documents), and a stretch of text without a safe cut.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/data/document_reader.h"
#include "anchorctx/data/packer.h"

namespace anchorctx::data {

class Tokenizer;

inline constexpr std::size_t kPackBlockBytes = std::size_t{4} << 20;
// A text file (one document) is read in parts of this size (ReaderOptions::text_part_bytes).
inline constexpr std::size_t kPackTextPartBytes = std::size_t{1} << 20;

struct PackConfig {
  std::vector<std::string> inputs;
  std::string tokenizer = "byte";  // "byte" or a tokenizer file / folder
  std::string out;
  bool replace = false;  // replace an existing `out`
  ReaderOptions reader;
  std::int32_t seq_len = 0;
  AnchorMode anchor_mode = AnchorMode::shared;
  std::optional<std::int32_t> anchor_id;   // default: bos, else eos
  std::optional<bool> continue_remainder;  // default: continue text, drop pre-tokenized
  bool interleave_chunks = false;
  std::uint64_t seed = 0;
  bool shuffle = true;          // seeded shuffle of the windows' reading order
  std::uint32_t batch = 1;      // windows per batch, recorded for the trainer
  std::string tag_field;        // domain tags: the source field whose value picks the tag
  std::string tags_file;        // JSON object {value: tag text}; default tag: "<value>\n"
  int threads = 0;              // 0: all cores
  bool quiet = false;           // no progress bar
  std::size_t piece_bytes = 0;  // a long document's pieces (0: StreamCutter's 1 MiB; tests)
};

// The anchor token pack uses when --anchor-id gives none: the tokenizer's bos, else its eos,
// else none (then only anchor mode `none` packs). eval's ppl puts it before every document of a
// text source (eval::ppl_document), as pack's per_doc mode does.
std::optional<std::int32_t> default_anchor_id(const Tokenizer& tokenizer);

// Runs the pipeline and returns the summary (also the `--json` output of `anchorctx pack`).
// Throws anchorctx::Error on bad input (naming file and line) or a failed write; then nothing
// is left under `out`.
nlohmann::json pack_dataset(const PackConfig& config);

}  // namespace anchorctx::data
