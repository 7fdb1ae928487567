// `anchorctx pack`: corpora -> a packed dataset folder (data/pack.h does the work).
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/data/pack.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

struct Args {
  data::PackConfig config;
  std::string anchor_mode = "shared";
  std::string format = "auto";
  bool continue_remainder = false;
  bool drop_remainder = false;
  bool no_shuffle = false;
  bool json = false;
};

void print_summary(const nlohmann::json& s) {
  const auto& st = s["stats"];
  std::string skipped;
  for (const auto& [k, v] : s["skipped_lines"].items())
    skipped += fmt::format(" {}={}", k, v.get<std::uint64_t>());
  std::fprintf(
      stderr, "%s",
      fmt::format(
          "packed {} -> {}\n"
          "  windows      {} x {} tokens (seq_len {} + 1), {} batches of {}"
          " ({} windows left over)\n"
          "  anchor       {} (id {})\n"
          "  documents    {} read, {} packed, {} skipped (<= 2 tokens)\n"
          "  tokens       {} in, {} dropped as remainders, {} in the last"
          " partial window\n"
          "  bad lines   {}\n"
          "  speed        {:.1f} MB read in {:.2f} s = {:.1f} MB/s ({:.1f} MB/s of text) on {}"
          " threads\n",
          s["tokenizer"].get<std::string>(), s["out"].get<std::string>(),
          s["windows"].get<std::uint64_t>(), s["seq_len"].get<int>() + 1, s["seq_len"].get<int>(),
          s["batches"].get<std::uint64_t>(), s["batch_size"].get<std::uint32_t>(),
          s["leftover_windows"].get<std::uint64_t>(), s["anchor_mode"].get<std::string>(),
          s["anchor_id"].dump(), s["documents_read"].get<std::uint64_t>(),
          st["documents_packed"].get<std::uint64_t>(),
          st["documents_skipped_short"].get<std::uint64_t>(), st["tokens_in"].get<std::uint64_t>(),
          st["tokens_dropped_remainder"].get<std::uint64_t>(),
          st["tokens_dropped_tail"].get<std::uint64_t>(),
          skipped.empty() ? std::string(" none") : skipped, s["input_bytes"].get<double>() / 1e6,
          s["seconds"].get<double>(), s["mb_per_s"].get<double>(), s["text_mb_per_s"].get<double>(),
          s["threads"].get<int>())
          .c_str());
}

}  // namespace

void register_pack(CLI::App& app) {
  auto args = std::make_shared<Args>();
  data::PackConfig& c = args->config;
  CLI::App* cmd = app.add_subcommand(
      "pack",
      "Pack corpora into training windows (a dataset folder).\n"
      "Inputs: JSONL ({\"text\": ...} per line), pre-tokenized JSONL ({\"input_ids\": [...], "
      "\"source\": [{\"end\": n}, ...]}), or plain text (*.txt: one document per file, or per line "
      "with --one-per-line); any of them gzip- or zstd-compressed.\n"
      "Memory is bounded by a constant whatever the input size, one huge document included "
      "(docs/RELIABILITY.md): (threads + 2) blocks of 4 MiB of text and their token ids (about "
      "80 MiB with 2 threads and the byte tokenizer), each worker's tokenizer working memory on "
      "a 1 MiB piece, 4 MiB of write buffer per output file, and 8 bytes per window: a text file "
      "is read in 1 MiB parts and its ids flow into the windows as they come (measured peak: "
      "144 MB for one 200 MB document, 138 MB for a 200 MB JSONL; byte tokenizer, 2 threads). "
      "Held whole: a line of JSONL or of --one-per-line text (its text; its ids still flow), a "
      "pre-tokenized row, the 4096 "
      "documents of an interleave group (--interleave-chunks), and for a tokenizer.json a "
      "stretch of text without a safe cut (no space after an ASCII character).");
  cmd->add_option("--input", c.inputs, "Input files or folders (folders walked, sorted)")
      ->required()
      ->expected(1, -1);
  cmd->add_option("--tokenizer", c.tokenizer, "'byte' or a tokenizer file or folder")
      ->capture_default_str();
  cmd->add_option("--seq-len", c.seq_len, "Tokens per training sequence (windows hold seq_len + 1)")
      ->required()
      ->check(CLI::Range(2, 1 << 30));
  cmd->add_option("--anchor-mode", args->anchor_mode, "shared, per_doc or none")
      ->capture_default_str()
      ->check(enum_check<data::AnchorMode>());
  cmd->add_option("--out", c.out, "The dataset folder to create (must not exist)")->required();
  cmd->add_flag("--force", c.replace, "Replace --out if it exists");
  cmd->add_option("--batch", c.batch, "Windows per batch (recorded for the trainer)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--seed", c.seed, "Seed of the window shuffle and the interleaving")
      ->capture_default_str();
  cmd->add_flag("--no-shuffle", args->no_shuffle,
                "Keep the windows in input order (default: a "
                "seeded shuffle)");
  cmd->add_flag("--interleave-chunks", c.interleave_chunks,
                "Cut documents of 64..2048 tokens into 2-3 parts and interleave them");
  cmd->add_option("--tag-field", c.tag_field,
                  "Domain tags: the JSON field whose value picks a tag, prepended to each "
                  "document and kept out of the loss");
  cmd->add_option("--tags", c.tags_file,
                  "JSON object {value: tag text} (default tag: the value and a newline)");
  cmd->add_option("--text-field", c.reader.text_field, "The JSONL field holding the text")
      ->capture_default_str();
  cmd->add_option("--format", args->format,
                  "auto (*.txt: text, else JSONL; pre-tokenized if rows have input_ids), jsonl, "
                  "pretokenized or text")
      ->capture_default_str()
      ->check(enum_check<data::InputFormat>());
  cmd->add_flag("--one-per-line", c.reader.one_per_line,
                "Text inputs: one document per line (default: one per file)");
  cmd->add_flag("--skip-bad", c.reader.skip_bad,
                "Skip bad lines and count them by reason (default: stop at the first)");
  cmd->add_flag("--quiet", c.quiet, "No progress bar");
  add_threads_option(*cmd, c.threads, "Tokenizer threads (0: all cores)");
  auto* cont = cmd->add_flag("--continue-remainder", args->continue_remainder,
                             "The overflowing document's remainder opens the next window "
                             "(default for text inputs)");
  auto* drop = cmd->add_flag("--drop-remainder", args->drop_remainder,
                             "Drop the overflowing document's remainder (default for "
                             "pre-tokenized inputs)");
  cont->excludes(drop);
  // Straight into the optional: a negative id reaches pack_dataset's vocabulary check instead of
  // meaning "unset" (-5 used to become the default silently).
  cmd->add_option("--anchor-id", c.anchor_id, "The anchor token id (default: bos, else eos)");
  cmd->add_flag("--json", args->json, "Print the summary as one JSON object on stdout");

  cmd->callback([args]() {
    data::PackConfig config = args->config;
    config.anchor_mode = *data::parse_anchor_mode(args->anchor_mode);
    if (args->continue_remainder) config.continue_remainder = true;
    if (args->drop_remainder) config.continue_remainder = false;
    config.shuffle = !args->no_shuffle;
    config.reader.format = *core::parse_enum<data::InputFormat>(args->format);
    core::install_interrupt_handlers();  // Ctrl-C removes the temporary dataset folder
    const nlohmann::json summary = data::pack_dataset(config);
    if (!config.quiet || !args->json) print_summary(summary);
    if (args->json)  // file names as in meta.json: invalid UTF-8 as U+FFFD
      std::printf("%s\n",
                  summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  });
}

}  // namespace anchorctx::cli
