// The training tokenizer into the run folder (run_tokenizer.h).
#include "anchorctx/train/run_tokenizer.h"

#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/data/tokenizer_files.h"

namespace anchorctx::train {
namespace fs = std::filesystem;

namespace {

// Said with --quiet too: the checkpoints will lack what generate and eval need.
void warn(const std::string& spec, const std::string& why) {
  std::fprintf(stderr,
               "anchorctx: warning: the dataset's tokenizer '%s' is not copied into the "
               "checkpoints (%s); pass its files with --copy-file\n",
               spec.c_str(), why.c_str());
}

}  // namespace

std::vector<fs::path> prepare_run_tokenizer(const nlohmann::json& dataset_meta,
                                            const fs::path& run_dir) {
  const nlohmann::json tokenizer = dataset_meta.value("tokenizer", nlohmann::json::object());
  const std::string spec = tokenizer.value("spec", "");
  const std::string hash = tokenizer.value("content_hash", "");
  if (spec.empty()) {
    warn(spec, "meta.json names none");
    return {};
  }

  std::vector<data::TokenizerFile> generated;
  std::vector<fs::path> sources;
  std::string main_name;  // the tokenizer file's name in the folder (sources[0]'s)
  if (spec == "byte") {
    generated = data::byte_tokenizer_hf_files();
  } else {
    // The spec as pack was given it: usable only if it still names the same tokenizer.
    try {
      const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(spec);
      if (tokenizer->content_hash() != hash) {
        warn(spec, "the file's content hash is no longer the dataset's");
        return {};
      }
      sources = data::tokenizer_source_files(spec);
      main_name = data::tokenizer_file_name(tokenizer->kind());
    } catch (const Error& e) {
      warn(spec, e.what());
      return {};
    }
  }

  const fs::path folder = run_dir / "tokenizer";
  fs::create_directories(run_dir);
  core::AtomicDir dir(folder, /*replace=*/true);
  std::vector<fs::path> files;
  for (const data::TokenizerFile& f : generated) {
    core::write_file_atomic(dir.path() / f.name, f.content);
    files.push_back(folder / f.name);
  }
  for (std::size_t i = 0; i < sources.size(); ++i) {
    // The tokenizer under the name a model folder's reader looks for; its side files as they are.
    const fs::path name = i == 0 ? fs::path(main_name) : sources[i].filename();
    core::copy_file_atomic(sources[i], dir.path() / name);
    files.push_back(folder / name);
  }
  dir.commit();
  return files;
}

}  // namespace anchorctx::train
