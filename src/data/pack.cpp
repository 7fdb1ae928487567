// pack_dataset: reader -> parallel tokenizer -> packer -> dataset writer.
#include "anchorctx/data/pack.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/progress.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/stream_encoder.h"
#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {
namespace {

std::map<std::string, std::string> load_tags(const std::string& path) {
  std::map<std::string, std::string> tags;
  if (path.empty()) return tags;
  const nlohmann::json j = core::read_json_file(path, "the tags file");
  if (!j.is_object()) fail("{}: the tags file must be a JSON object {{value: tag text}}", path);
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) fail("{}: tag for '{}' is not a string", path, k);
    tags[k] = v.get<std::string>();
  }
  return tags;
}

nlohmann::json stats_json(const PackStats& s) {
  return {{"documents_in", s.documents_in},
          {"documents_packed", s.documents_packed},
          {"documents_skipped_short", s.documents_skipped_short},
          {"tokens_in", s.tokens_in},
          {"tokens_skipped_short", s.tokens_skipped_short},
          {"tokens_dropped_remainder", s.tokens_dropped_remainder},
          {"tokens_dropped_tail", s.tokens_dropped_tail},
          {"chunks", s.chunks},
          {"segments", s.segments},
          {"anchor_tokens", s.anchor_tokens},
          {"windows", s.windows}};
}

// The stages around the packer: one thread reads blocks of documents (the reader is a
// stream), `threads` workers tokenize whole blocks, and the caller takes the blocks back in
// reading order. At most `threads + 2` blocks are in flight, which bounds memory.
struct Block {
  std::uint64_t seq = 0;
  std::vector<Document> docs;
  std::vector<TokenizedDoc> encoded;
  std::vector<std::size_t> text_bytes;
  std::uint64_t bytes_read = 0;  // raw input bytes consumed when the block was complete
};

class BlockPipeline {
 public:
  BlockPipeline(DocumentReader& reader, const Tokenizer& tokenizer, int threads,
                std::size_t piece_bytes, std::size_t whole_limit)
      : reader_(reader),
        whole_limit_(whole_limit),
        tokenizer_(tokenizer),
        capacity_(static_cast<std::size_t>(threads) + 2),
        cutter_(
            tokenizer,
            [this](std::string_view piece, bool starts_text) { push_piece(piece, starts_text); },
            piece_bytes > 0 ? piece_bytes : StreamCutter::kDefaultPieceBytes) {
    threads_.emplace_back([this] { read_loop(); });
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this] { tokenize_loop(); });
  }
  ~BlockPipeline() { stop(); }

  // The next block in reading order, or nullptr at the end. Rethrows a stage's error.
  Block* next() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (error_) std::rethrow_exception(error_);
      auto it = ready_.find(next_seq_);
      if (it != ready_.end()) {
        current_ = std::move(it->second);
        ready_.erase(it);
        ++next_seq_;
        return current_.get();
      }
      if (read_done_ && next_seq_ == blocks_read_) return nullptr;
      changed_.wait(lock);
    }
  }
  // The caller is through with `block`: room for another.
  void done(Block* block) {
    std::lock_guard lock(mutex_);
    if (current_.get() == block) current_.reset();
    --in_flight_;
    changed_.notify_all();
  }
  // Joins the threads; the reader's end-of-input checks have run by then.
  void finish() {
    stop();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      changed_.notify_all();
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  void fail_with(std::exception_ptr e) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = e;
    stopping_ = true;
    changed_.notify_all();
  }

  void read_loop() {
    try {
      for (std::uint64_t seq = 0;; ++seq) {
        {
          std::unique_lock lock(mutex_);
          changed_.wait(lock, [&] { return stopping_ || in_flight_ < capacity_; });
          if (stopping_) return;
          ++in_flight_;
        }
        auto block = std::make_unique<Block>();
        block->seq = seq;
        std::size_t bytes = 0;
        bool more = true;
        while (bytes < kPackBlockBytes) {
          Document doc;
          if (!reader_.next(doc)) {
            more = false;
            break;
          }
          // A whole document longer than a part (a long JSONL line) is cut too: its ids then
          // flow on in pieces instead of being held whole.
          if (!doc.continues_previous && !doc.more_parts &&
              (doc.pretokenized || doc.text.size() <= whole_limit_)) {
            bytes += doc.text.size() + 4 * doc.ids.size();
            block->docs.push_back(std::move(doc));
            continue;
          }
          // A document in parts: cut into pieces at the tokenizer's safe cuts here, so the
          // workers can encode them independently (each piece is then one item of the block).
          cut_document_part(doc, *block, bytes);
        }
        block->bytes_read = reader_.bytes_read();
        std::lock_guard lock(mutex_);
        if (!block->docs.empty()) {
          to_tokenize_.push_back(std::move(block));
          ++blocks_read_;
        } else {
          --in_flight_;
        }
        if (!more) read_done_ = true;
        changed_.notify_all();
        if (!more) return;
      }
    } catch (...) {
      fail_with(std::current_exception());
    }
  }

  // Feeds one part of a document given in parts to the cutter, whose pieces become items of
  // `block`: continues_previous and more_parts then describe pieces, and a piece that does not
  // start the text is encoded with encode_continued.
  void cut_document_part(const Document& part, Block& block, std::size_t& bytes) {
    cut_.block = &block;
    cut_.bytes = &bytes;
    cut_.part = &part;
    cut_.last_given = false;
    cutter_.feed(part.text);
    if (!part.more_parts) {
      cut_.finishing = true;
      cutter_.finish();
      cut_.finishing = false;
      // The cutter gives nothing for an empty rest: close the document with an empty piece.
      if (!cut_.last_given) push_piece("", false);
    }
    cut_.block = nullptr;
  }

  void push_piece(std::string_view piece, bool starts_text) {
    Document item;
    item.text.assign(piece);
    item.source = cut_.part->source;
    item.file_index = cut_.part->file_index;
    item.line = cut_.part->line;
    item.continues_previous = !starts_text;
    item.more_parts = !cut_.finishing;
    cut_.last_given = cut_.finishing;
    *cut_.bytes += piece.size();
    cut_.block->docs.push_back(std::move(item));
  }

  void tokenize_loop() {
    try {
      for (;;) {
        std::unique_ptr<Block> block;
        {
          std::unique_lock lock(mutex_);
          changed_.wait(lock, [&] { return stopping_ || !to_tokenize_.empty() || read_done_; });
          if (stopping_) return;
          if (to_tokenize_.empty()) return;  // read_done_ and nothing left
          block = std::move(to_tokenize_.front());
          to_tokenize_.pop_front();
        }
        const std::size_t n = block->docs.size();
        block->encoded.resize(n);
        block->text_bytes.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
          Document& doc = block->docs[i];
          block->text_bytes[i] = doc.text.size();
          if (doc.pretokenized) {
            block->encoded[i].tokens = std::move(doc.ids);
          } else if (doc.continues_previous || doc.more_parts) {
            // A piece cut at a safe cut by the reading thread.
            block->encoded[i].tokens = doc.continues_previous
                                           ? tokenizer_.encode_continued(doc.text)
                                           : tokenizer_.encode(doc.text);
          } else {
            // In pieces: a long document costs its ids, not the tokenizer's working memory of
            // its whole text (tens of bytes per byte for llama2.c and SentencePiece).
            block->encoded[i].tokens = encode_in_pieces(tokenizer_, doc.text);
          }
          std::string().swap(doc.text);  // the text is no longer needed: free it early
        }
        std::lock_guard lock(mutex_);
        ready_.emplace(block->seq, std::move(block));
        changed_.notify_all();
      }
    } catch (...) {
      fail_with(std::current_exception());
    }
  }

  DocumentReader& reader_;
  const std::size_t whole_limit_;  // longer texts are cut in the reading thread
  const Tokenizer& tokenizer_;
  const std::size_t capacity_;
  // The reading thread's cutter of documents given in parts, and where its pieces go.
  StreamCutter cutter_;
  struct {
    Block* block = nullptr;
    std::size_t* bytes = nullptr;
    const Document* part = nullptr;
    bool finishing = false, last_given = false;
  } cut_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Block>> to_tokenize_;
  std::map<std::uint64_t, std::unique_ptr<Block>> ready_;
  std::unique_ptr<Block> current_;
  std::size_t in_flight_ = 0;
  std::uint64_t blocks_read_ = 0, next_seq_ = 0;
  bool read_done_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::optional<std::int32_t> default_anchor_id(const Tokenizer& tokenizer) {
  if (const std::optional<std::int32_t> bos = tokenizer.bos_id()) return bos;
  return tokenizer.eos_id();
}

nlohmann::json pack_dataset(const PackConfig& config) {
  const auto t0 = std::chrono::steady_clock::now();
  require(config.seq_len >= 2, "--seq-len must be at least 2, got {}", config.seq_len);
  require(config.batch >= 1, "--batch must be at least 1");
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(config.tokenizer);
  const std::int32_t vocab = tokenizer->vocab_size();

  std::int32_t anchor_id = -1;
  if (config.anchor_id) {
    anchor_id = *config.anchor_id;
    require(anchor_id >= 0 && anchor_id < vocab, "--anchor-id {} is outside the vocabulary [0, {})",
            anchor_id, vocab);
  } else if (const std::optional<std::int32_t> id = default_anchor_id(*tokenizer)) {
    anchor_id = *id;
  }
  if (config.anchor_mode != AnchorMode::none && anchor_id < 0)
    fail("tokenizer '{}' has neither bos nor eos: give --anchor-id for anchor mode {}",
         config.tokenizer, to_string(config.anchor_mode));

  ReaderOptions reader_options = config.reader;
  if (!config.tag_field.empty()) reader_options.source_field = config.tag_field;
  // A text file's one document arrives in parts, so its size never sets the memory.
  if (reader_options.text_part_bytes == 0) reader_options.text_part_bytes = kPackTextPartBytes;
  DocumentReader reader(config.inputs, reader_options);
  const auto tag_texts = load_tags(config.tags_file);
  std::map<std::string, std::vector<std::int32_t>> tag_ids;  // encoded once per value

  // A dataset inside an input folder is read back as input by the next pack of that folder (its
  // .bin files as text: "invalid UTF-8"), so it is refused before any work.
  for (const std::string& input : config.inputs) {
    std::error_code ec;
    if (std::filesystem::is_directory(input, ec) && core::lies_within(config.out, input))
      fail(
          "pack: --out '{}' lies inside the input folder '{}': the next pack of that folder "
          "would read the dataset as input; choose an --out outside it",
          config.out, input);
  }
  // What --force must never remove: everything this run reads.
  std::vector<std::filesystem::path> read_paths(config.inputs.begin(), config.inputs.end());
  if (config.tokenizer != "byte") read_paths.emplace_back(config.tokenizer);
  if (!config.tags_file.empty()) read_paths.emplace_back(config.tags_file);
  DatasetWriter writer(config.out, config.seq_len, vocab, config.replace, read_paths);
  std::unique_ptr<Packer> packer;  // made at the first document: its kind picks the default
  bool pretokenized_input = false;
  core::Progress progress(reader.total_bytes(), config.quiet);
  const int threads = core::resolve_threads(config.threads);
  std::map<std::string, std::uint64_t> bad_ids;  // pre-tokenized ids outside the vocabulary
  std::uint64_t documents_read = 0, untagged = 0, tag_tokens = 0, text_bytes = 0;

  BlockPipeline pipeline(reader, *tokenizer, threads, config.piece_bytes,
                         reader_options.text_part_bytes);
  // A document's domain tag ids (encoded once per value), or nullptr when it has no source.
  const auto tag_of = [&](const Document& doc) -> const std::vector<std::int32_t>* {
    if (doc.source.empty()) {
      ++untagged;
      return nullptr;
    }
    auto it = tag_ids.find(doc.source);
    if (it == tag_ids.end()) {
      const auto t = tag_texts.find(doc.source);
      const std::string text = t != tag_texts.end() ? t->second : doc.source + "\n";
      it = tag_ids.emplace(doc.source, tokenizer->encode(text)).first;
    }
    tag_tokens += it->second.size();
    return &it->second;
  };
  TokenizedDoc assembling;  // interleaving: a document given in pieces, put back together
  while (Block* block = pipeline.next()) {
    // Between blocks nothing is half written: the output folder is still a temporary one.
    core::throw_if_interrupted("while packing; nothing was written");
    for (std::size_t i = 0; i < block->docs.size(); ++i) {
      const Document& doc = block->docs[i];
      TokenizedDoc& td = block->encoded[i];
      text_bytes += block->text_bytes[i];
      if (!doc.continues_previous) ++documents_read;
      if (!packer) {
        pretokenized_input = doc.pretokenized;
        PackOptions options;
        options.seq_len = config.seq_len;
        options.anchor_mode = config.anchor_mode;
        options.anchor_id = anchor_id;
        options.continue_remainder = config.continue_remainder.value_or(!doc.pretokenized);
        options.interleave_chunks = config.interleave_chunks;
        options.seed = config.seed;
        packer = std::make_unique<Packer>(options, [&](const Window& w) { writer.add(w); });
      }
      if (doc.pretokenized) {
        bool ok = true;
        for (std::size_t k = 0; k < td.tokens.size() && ok; ++k) {
          if (td.tokens[k] >= vocab) {
            ok = false;
            const std::string& file = reader.sources()[doc.file_index].path;
            if (!config.reader.skip_bad)
              fail("{}:{}: input_ids holds id {}, outside the tokenizer's vocabulary [0, {})", file,
                   doc.line, td.tokens[k], vocab);
            ++bad_ids["token_id_outside_vocab"];
          }
        }
        if (!ok) continue;
      }
      if (doc.continues_previous || doc.more_parts) {
        // A piece of a document given in parts: it flows on into the windows (interleaving
        // shuffles whole documents, so it holds the document until its last piece).
        const std::vector<std::int32_t>* tag = nullptr;
        if (!doc.continues_previous && !config.tag_field.empty()) tag = tag_of(doc);
        const auto masked = static_cast<std::int32_t>(tag != nullptr ? tag->size() : 0);
        if (config.interleave_chunks) {
          if (!doc.continues_previous) {
            assembling = TokenizedDoc{};
            assembling.masked_prefix = masked;
            if (tag != nullptr) assembling.tokens = *tag;
          }
          assembling.tokens.insert(assembling.tokens.end(), td.tokens.begin(), td.tokens.end());
          if (!doc.more_parts) packer->add(std::move(assembling));
        } else {
          if (!doc.continues_previous) {
            packer->begin_document(masked);
            if (tag != nullptr) packer->add_tokens(*tag);
          }
          packer->add_tokens(td.tokens);
          if (!doc.more_parts) packer->end_document();
        }
        continue;
      }
      if (!config.tag_field.empty()) {
        if (const std::vector<std::int32_t>* tag = tag_of(doc)) {
          td.masked_prefix = static_cast<std::int32_t>(tag->size());
          td.tokens.insert(td.tokens.begin(), tag->begin(), tag->end());
        }
      }
      packer->add(std::move(td));
    }
    progress.update(block->bytes_read, documents_read, writer.windows());
    pipeline.done(block);
  }
  pipeline.finish();
  progress.finish();
  if (!packer) fail("no documents in the input (every line was skipped?)");
  packer->finish();
  const PackStats& stats = packer->stats();
  if (stats.windows == 0)
    fail("the input holds {} document tokens: not enough for one window of {} tokens",
         stats.tokens_in, config.seq_len + 1);

  const auto order = window_order(writer.windows(), config.shuffle, config.seed);
  auto skipped = reader.skipped();
  for (const auto& [k, v] : bad_ids)
    skipped[k] += v;

  nlohmann::json meta;
  // The path made absolute: a relative one named nothing for a train run from another folder,
  // whose checkpoints then went without the tokenizer.
  const std::string spec = config.tokenizer == "byte"
                               ? config.tokenizer
                               : std::filesystem::absolute(config.tokenizer).string();
  meta["tokenizer"] = {{"spec", spec},
                       {"kind", tokenizer->kind()},
                       {"content_hash", tokenizer->content_hash()},
                       {"vocab_size", vocab},
                       {"bos_id", tokenizer->bos_id() ? nlohmann::json(*tokenizer->bos_id())
                                                      : nlohmann::json(nullptr)},
                       {"eos_id", tokenizer->eos_id() ? nlohmann::json(*tokenizer->eos_id())
                                                      : nlohmann::json(nullptr)}};
  meta["anchor_mode"] = std::string(to_string(config.anchor_mode));
  meta["anchor_id"] =
      config.anchor_mode == AnchorMode::none ? nlohmann::json(nullptr) : nlohmann::json(anchor_id);
  meta["batch_size"] = config.batch;
  meta["pack_stats"] = stats_json(stats);
  meta["counts"] = {{"documents", stats.documents_packed},
                    {"segments", stats.segments},
                    {"batches", stats.windows / config.batch}};
  nlohmann::json sources = nlohmann::json::array();
  for (const SourceInfo& s : reader.sources())
    sources.push_back({{"path", s.path},
                       {"bytes", s.bytes},
                       {"compression", s.compression},
                       {"xxh3_128", s.xxh3_128},
                       {"documents", s.documents}});
  meta["sources"] = sources;
  meta["options"] = {{"continue_remainder", packer->options().continue_remainder},
                     {"interleave_chunks", config.interleave_chunks},
                     {"interleave_group", packer->options().interleave_group},
                     {"min_doc_tokens", packer->options().min_doc_tokens},
                     {"seed", config.seed},
                     {"shuffle", config.shuffle},
                     {"text_field", reader_options.text_field},
                     {"tag_field", config.tag_field},
                     {"tags", tag_texts},
                     {"one_per_line", reader_options.one_per_line},
                     {"skip_bad", reader_options.skip_bad},
                     {"pretokenized_input", pretokenized_input}};
  meta["skipped_lines"] = skipped;
  writer.commit(meta, order);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json summary = {
      {"out", config.out},
      {"windows", stats.windows},
      {"tokens", stats.windows * static_cast<std::uint64_t>(config.seq_len + 1)},
      {"seq_len", config.seq_len},
      {"anchor_mode", std::string(to_string(config.anchor_mode))},
      {"anchor_id", meta["anchor_id"]},
      {"batch_size", config.batch},
      {"batches", stats.windows / config.batch},
      {"leftover_windows", stats.windows % config.batch},
      {"documents_read", documents_read},
      {"untagged_documents", untagged},
      {"tag_tokens", tag_tokens},
      {"input_bytes", reader.bytes_read()},
      {"text_bytes", text_bytes},
      {"skipped_lines", skipped},
      {"tokenizer", tokenizer->kind()},
      {"threads", threads},
      {"seconds", secs},
      {"mb_per_s", secs > 0 ? static_cast<double>(reader.bytes_read()) / 1e6 / secs : 0.0},
      {"text_mb_per_s", secs > 0 ? static_cast<double>(text_bytes) / 1e6 / secs : 0.0}};
  summary["stats"] = stats_json(stats);
  return summary;
}

}  // namespace anchorctx::data
