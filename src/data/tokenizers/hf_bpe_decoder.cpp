#include "data/tokenizers/hf_bpe_decoder.h"

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "data/tokenizers/hf_bpe_text.h"

namespace anchorctx::data::hf_bpe {
namespace {

using json = nlohmann::json;

// Byte-level stand-ins back to bytes over all tokens, then lossy UTF-8. A token with a code
// point outside the alphabet (an added token's content) contributes its own bytes.
class ByteLevelDecoder final : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      const std::size_t mark = bytes.size();
      if (!byte_level_decode(t, bytes)) {
        bytes.resize(mark);
        bytes.append(t);
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

// `<0xNN>` tokens become bytes; each run of them becomes its text when it is valid UTF-8,
// else one U+FFFD per byte.
class ByteFallbackDecoder final : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string run;
    std::size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (utf8_lossy(run) == run) {
        out.push_back(run);
      } else {
        for (std::size_t i = 0; i < run_len; ++i)
          out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') byte = parse_hex(t[3], t[4]);
      if (byte >= 0) {
        run.push_back(static_cast<char>(byte));
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int parse_hex(char hi, char lo) {
    const int h = hex_digit(hi), l = hex_digit(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder final : public DecoderStep {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens)
      all += t;
    tokens.assign(1, std::move(all));
  }
};

class ReplaceDecoder final : public DecoderStep {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (from_.empty()) return;
    for (std::string& t : tokens) {
      std::string out;
      std::size_t pos = 0;
      for (std::size_t hit = t.find(from_); hit != std::string::npos; hit = t.find(from_, pos)) {
        out.append(t, pos, hit - pos);
        out.append(to_);
        pos = hit + from_.size();
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string from_, to_;
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder final : public DecoderStep {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (std::string& t : tokens) {
      std::size_t begin = 0, end = t.size();
      for (std::size_t i = 0; i < start_ && std::string_view(t).substr(begin).starts_with(content_);
           ++i)
        begin += content_.size();
      for (std::size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                              std::string_view(t).substr(begin, end - begin).ends_with(content_);
           ++i)
        end -= content_.size();
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

// Replacement character back to spaces; with a prepend scheme, the first token's replacement
// characters are dropped rather than turned into spaces (as `tokenizers` does).
class MetaspaceDecoder final : public DecoderStep {
 public:
  MetaspaceDecoder(std::string replacement, bool prepend)
      : replacement_(std::move(replacement)), prepend_(prepend) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      std::size_t pos = 0;
      for (std::size_t hit = t.find(replacement_); hit != std::string::npos;
           hit = t.find(replacement_, pos)) {
        out.append(t, pos, hit - pos);
        if (!(i == 0 && prepend_)) out.push_back(' ');
        pos = hit + replacement_.size();
      }
      out.append(t, pos, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool prepend_;
};

void add_steps(const json& spec, std::vector<std::shared_ptr<const DecoderStep>>& steps) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const json& child : spec.at("decoders"))
      add_steps(child, steps);
  } else if (type == "ByteLevel") {
    steps.push_back(std::make_shared<ByteLevelDecoder>());
  } else if (type == "ByteFallback") {
    steps.push_back(std::make_shared<ByteFallbackDecoder>());
  } else if (type == "Fuse") {
    steps.push_back(std::make_shared<FuseDecoder>());
  } else if (type == "Replace") {
    const json& pattern = spec.at("pattern");
    if (!pattern.contains("String")) fail("decoder Replace: only String patterns are supported");
    steps.push_back(std::make_shared<ReplaceDecoder>(pattern.at("String"), spec.at("content")));
  } else if (type == "Strip") {
    steps.push_back(std::make_shared<StripDecoder>(spec.at("content").get<std::string>(),
                                                   spec.value("start", std::size_t{0}),
                                                   spec.value("stop", std::size_t{0})));
  } else if (type == "Metaspace") {
    bool prepend = spec.value("add_prefix_space", true);
    if (spec.contains("prepend_scheme")) prepend = spec.at("prepend_scheme") != "never";
    steps.push_back(std::make_shared<MetaspaceDecoder>(
        one_character(spec.value("replacement", "\xE2\x96\x81"), "decoder Metaspace"), prepend));
  } else {
    fail(
        "decoder type '{}' is not supported (supported: Sequence, ByteLevel, ByteFallback, "
        "Fuse, Replace, Strip, Metaspace)",
        type);
  }
}

}  // namespace

Decoder Decoder::from_json(const json& spec) {
  Decoder d;
  d.present_ = !spec.is_null();
  if (d.present_) add_steps(spec, d.steps_);
  return d;
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  std::string text;
  if (!present_) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) text.push_back(' ');
      text += tokens[i];
    }
    return text;
  }
  for (const auto& step : steps_)
    step->apply(tokens);
  for (const std::string& t : tokens)
    text += t;
  return text;
}

}  // namespace anchorctx::data::hf_bpe
