// DocumentReader: walks the input files in order, one FileReader at a time.
#include "anchorctx/data/document_reader.h"

#include <algorithm>
#include <filesystem>

#include "anchorctx/core/error.h"
#include "data/readers/readers.h"

namespace anchorctx::data {
namespace fs = std::filesystem;

struct DocumentReader::FileReader {
  std::unique_ptr<readers::ByteStream> stream;
  std::unique_ptr<readers::FileReaderBase> reader;
  std::uint64_t skipped_before = 0;  // skipped-line total when the file was opened
};

namespace {

bool is_text_name(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  for (const char* ext : {".gz", ".zst", ".zstd"}) {
    if (name.ends_with(ext)) name.resize(name.size() - std::string_view(ext).size());
  }
  return name.ends_with(".txt") || name.ends_with(".text");
}

std::uint64_t total_skipped(const std::map<std::string, std::uint64_t>& m) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : m)
    n += v;
  return n;
}

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) fail("{}: no such file or folder", input);
    if (fs::is_directory(st)) {
      std::vector<std::string> found;
      // Error codes throughout: a symbolic-link loop, a dangling link or an unreadable subfolder
      // is named (libstdc++'s "filesystem error" text escaped before), never skipped unsaid.
      const auto refuse = [](const fs::path& path, const std::error_code& e) {
        fail("{}: cannot read it: {}", path.string(), e.message());
      };
      auto it = fs::recursive_directory_iterator(input, ec);
      if (ec) refuse(input, ec);
      while (it != fs::end(it)) {
        const std::string name = it->path().filename().string();
        if (name.starts_with(".")) {
          if (it->is_directory(ec)) it.disable_recursion_pending();
        } else {
          const fs::file_status entry = it->status(ec);
          if (ec) refuse(it->path(), ec);
          if (fs::is_regular_file(entry)) found.push_back(it->path().string());
        }
        it.increment(ec);  // on failure `it` is the end: name the folder
        if (ec) refuse(input, ec);
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) fail("{}: empty input (a folder without files)", input);
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(input);
    }
  }
  return files;
}

DocumentReader::DocumentReader(const std::vector<std::string>& inputs, ReaderOptions options)
    : options_(std::move(options)) {
  require(!inputs.empty(), "no input given");
  for (const std::string& path : expand_inputs(inputs)) {
    SourceInfo info;
    info.path = path;
    std::error_code ec;
    info.bytes = fs::file_size(path, ec);
    if (ec) fail("{}: cannot read its size: {}", path, ec.message());
    total_bytes_ += info.bytes;
    sources_.push_back(std::move(info));
  }
}

DocumentReader::~DocumentReader() = default;

std::uint64_t DocumentReader::bytes_read() const {
  return finished_bytes_ + (current_ ? current_->stream->raw_bytes_read() : 0);
}

bool DocumentReader::open_next_file() {
  if (next_file_ >= sources_.size()) return false;
  const std::string& path = sources_[next_file_].path;
  current_ = std::make_unique<FileReader>();
  current_->stream = readers::ByteStream::open_file(path);
  current_->skipped_before = total_skipped(skipped_);
  readers::BadInput bad{options_.skip_bad, &skipped_};
  const bool text = options_.format == InputFormat::text ||
                    (options_.format == InputFormat::auto_detect && is_text_name(path));
  current_->reader = text ? readers::make_text_reader(*current_->stream, options_, bad)
                          : readers::make_jsonl_reader(*current_->stream, options_, bad);
  sources_[next_file_].compression = current_->stream->compression();
  ++next_file_;
  return true;
}

bool DocumentReader::next(Document& doc) {
  for (;;) {
    if (!current_ && !open_next_file()) return false;
    if (current_->reader->next(doc)) {
      doc.file_index = static_cast<std::uint32_t>(next_file_ - 1);
      if (!doc.continues_previous) ++sources_[next_file_ - 1].documents;
      return true;
    }
    SourceInfo& info = sources_[next_file_ - 1];
    info.xxh3_128 = current_->stream->raw_hash_hex();
    finished_bytes_ += current_->stream->raw_bytes_read();
    // An input that yields nothing is bad input: an error, or with skip_bad counted as an
    // "empty_input" (one empty file among a folder's need not stop a corpus); an input whose
    // lines were all skipped is counted already. Nothing is dropped silently.
    if (info.documents == 0 && total_skipped(skipped_) == current_->skipped_before) {
      if (!options_.skip_bad)
        fail("{}: empty input (no documents; pack --skip-bad counts it and goes on)", info.path);
      ++skipped_["empty_input"];
    }
    current_.reset();
  }
}

}  // namespace anchorctx::data
