// libFuzzer target: the JSONL reader (text and pre-tokenized rows) on arbitrary bytes, plain or
// compressed. Any input must end in documents or an anchorctx::Error; never a crash, a hang or
// a leak. Build with -DANCHORCTX_FUZZ=ON and clang; run e.g.
//   build-fuzz/jsonl_reader_fuzz -max_total_time=60 -max_len=4096
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "anchorctx/core/error.h"
#include "anchorctx/data/document_reader.h"
#include "data/readers/readers.h"

namespace readers = anchorctx::data::readers;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the options, so one corpus covers every path.
  const std::uint8_t flags = data[0];
  anchorctx::data::ReaderOptions options;
  options.skip_bad = (flags & 1) != 0;
  options.format = (flags & 2) != 0 ? anchorctx::data::InputFormat::pretokenized
                                    : anchorctx::data::InputFormat::auto_detect;
  if ((flags & 4) != 0) options.source_field = "source";
  if ((flags & 8) != 0) options.text_field = "t";
  std::map<std::string, std::uint64_t> skipped;
  const readers::BadInput bad{options.skip_bad, &skipped};
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    auto stream = readers::ByteStream::from_memory("fuzz.jsonl", bytes);
    auto reader = readers::make_jsonl_reader(*stream, options, bad);
    anchorctx::data::Document doc;
    std::size_t total = 0;
    while (reader->next(doc))
      total += doc.text.size() + doc.ids.size();
    (void)total;
  } catch (const anchorctx::Error&) {
    // Bad input, reported: fine.
  }
  return 0;
}
