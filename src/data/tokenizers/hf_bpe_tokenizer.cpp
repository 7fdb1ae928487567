// HuggingFace tokenizer.json with a BPE model: the loader and the Tokenizer that wires the
// pipeline of the `tokenizers` library together:
//   added tokens (raw text) -> normalizer -> added tokens (normalized text) -> pre-tokenizer ->
//   BPE model per word;  decode: id -> token text (special added tokens dropped) -> decoder.
// The post-processor is not applied (encode returns ids without bos/eos); it is only read to
// recognise bos and eos.
//
// bos / eos / pad, in order: (1) a TemplateProcessing post-processor (alone or in a Sequence):
// the special token before $A in "single" is bos, the one after it eos (RobertaProcessing /
// BertProcessing: its cls is bos); (2) for those still unknown, the first known name present
// among the added tokens, then the vocabulary:
//   bos: <s>, <|begin_of_text|>, <|startoftext|>, <bos>
//   eos: </s>, <|end_of_text|>, <|endoftext|>, <eos>, <|im_end|>
//   pad: <pad>, <|pad|>, [PAD], <|padding|>, <|finetune_right_pad_id|>
// So GPT-2 and Qwen2 have no bos and eos <|endoftext|>; LLaMA-3 has bos <|begin_of_text|> and
// eos <|end_of_text|>; LLaMA-2 <s> and </s>.
// Only a post-processor's bos is prompt_bos_id(), the one prompts start with: `tokenizers`'
// encode(add_special_tokens=True) and transformers' AutoTokenizer add no other (a bos found by
// name, with a post-processor that adds none, was prepended to prompts; it stays bos_id(), the
// anchor pack uses, so datasets and their anchors are unchanged).
#include <array>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/core/json_file.h"
#include "data/tokenizers/hf_bpe_added_tokens.h"
#include "data/tokenizers/hf_bpe_decoder.h"
#include "data/tokenizers/hf_bpe_model.h"
#include "data/tokenizers/hf_bpe_normalizer.h"
#include "data/tokenizers/hf_bpe_pre_tokenizer.h"
#include "data/tokenizers/loaders.h"

namespace anchorctx::data {
namespace {

using json = nlohmann::json;
using namespace hf_bpe;

struct SpecialIds {
  std::optional<std::int32_t> bos, eos, pad;
  std::optional<std::int32_t> prompt_bos;  // the post-processor's bos only
};

class HfBpeTokenizer final : public Tokenizer {
 public:
  HfBpeTokenizer(BpeModel model, Normalizer normalizer, PreTokenizer pre_tokenizer, Decoder decoder,
                 std::vector<AddedToken> added, SpecialIds special, std::string hash)
      : model_(std::move(model)),
        normalizer_(std::move(normalizer)),
        pre_tokenizer_(std::move(pre_tokenizer)),
        decoder_(std::move(decoder)),
        special_(special),
        hash_(std::move(hash)) {
    std::int32_t max_id = model_.max_id();
    std::vector<std::string> raw_patterns, norm_patterns;
    std::vector<AddedToken> raw_tokens, norm_tokens;
    std::unordered_set<std::string> special_contents;
    for (const AddedToken& t : added)
      if (t.special) special_contents.insert(t.content);
    for (AddedToken& t : added) {
      max_id = std::max(max_id, t.id);
      // Decoded as `tokenizers` decodes it: the token's text is its normalized content when it
      // is normalized ("<custom>" under Prepend "▁" is "▁<custom>", which the decoder makes
      // " <custom>"), and decode drops the tokens whose text is a special token's content (so
      // a special token whose normalized content differs is kept, as there).
      std::string text = t.content;
      if (t.normalized) {
        // Looked for in normalized text: its content normalized too, as `tokenizers` does.
        normalizer_.apply(text);
        norm_patterns.push_back(text);
        norm_tokens.push_back(t);
      } else {
        raw_patterns.push_back(t.content);
        raw_tokens.push_back(t);
      }
      const bool dropped = special_contents.contains(text);
      added_by_id_.try_emplace(t.id, AddedText{std::move(text), dropped});
    }
    find_stream_cuts(raw_patterns, raw_tokens, norm_patterns, norm_tokens);
    raw_matcher_ = AddedTokenMatcher(std::move(raw_patterns), std::move(raw_tokens));
    norm_matcher_ = AddedTokenMatcher(std::move(norm_patterns), std::move(norm_tokens));
    vocab_size_ = max_id + 1;
    // A post-processor's bos or eos is any id tokenizer.json names, checked against nothing
    // else: one past the vocabulary was printed by tokenize and failed later without the file.
    for (const auto& [name, id] : {std::pair{"bos", special_.bos}, std::pair{"eos", special_.eos},
                                   std::pair{"pad", special_.pad}})
      if (id && *id >= vocab_size_)
        fail("the {} token's id {} is outside the vocabulary [0, {})", name, *id, vocab_size_);
  }

  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<Segment> segments;
    split_added(raw_matcher_, text, segments);
    std::vector<Segment> inner;
    std::string normalized;
    for (const Segment& seg : segments) {
      if (seg.id) {
        ids.push_back(*seg.id);
        continue;
      }
      std::string_view part = text.substr(seg.begin, seg.end - seg.begin);
      const bool at_start = seg.begin == 0;
      if (!normalizer_.empty()) {
        normalized.assign(part);
        normalizer_.apply(normalized);
        part = normalized;
      }
      inner.clear();
      split_added(norm_matcher_, part, inner);
      for (const Segment& sub : inner) {
        if (sub.id) {
          ids.push_back(*sub.id);
          continue;
        }
        pre_tokenizer_.run(part.substr(sub.begin, sub.end - sub.begin), at_start && sub.begin == 0,
                           [&](std::string_view word, bool) { model_.encode_word(word, ids); });
      }
    }
    return ids;
  }

  // Safe cuts: before a space that follows a printable ASCII character c, when every stage
  // keeps that place (find_stream_cuts): no added token can hold it or start there, the
  // normalizer is none or NFC, and the pre-tokenizer always splits there (a ByteLevel or Split
  // regex of GPT-2, LLaMA-3 or Qwen2, or Metaspace with split). Then the words of the text are
  // those of the text before the cut and those of the text after it, and the model encodes
  // words one by one. The text after the cut starts with the space, so no prefix space or
  // metaspace is added to it: encode_continued is encode.
  // A byte-wise model (each byte its own token: the byte tokenizer's tokenizer.json) behind a
  // plain ByteLevel, with no normalizer and no added tokens, cuts anywhere.
  std::size_t stream_cut(std::string_view text, std::size_t from) const override {
    const std::size_t lowest = std::max<std::size_t>(from, 1);
    if (any_byte_cuts_) return text.size() > lowest ? text.size() - 1 : 0;
    if (!space_cuts_) return 0;
    for (std::size_t k = text.size(); k-- > lowest;) {
      if (text[k] == ' ' && cut_after_[static_cast<unsigned char>(text[k - 1])]) return k;
    }
    return 0;
  }

  std::string decode(std::span<const std::int32_t> ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const std::int32_t id : ids) {
      if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        if (!it->second.dropped) tokens.push_back(it->second.text);
        continue;
      }
      const std::string* token = model_.id_to_token(id);
      require(token != nullptr, "hf_bpe tokenizer: id {} is outside the vocabulary [0, {})", id,
              vocab_size_);
      tokens.push_back(*token);
    }
    return decoder_.decode(std::move(tokens));
  }

  std::int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::int32_t> bos_id() const override { return special_.bos; }
  std::optional<std::int32_t> prompt_bos_id() const override { return special_.prompt_bos; }
  std::optional<std::int32_t> eos_id() const override { return special_.eos; }
  std::optional<std::int32_t> pad_id() const override { return special_.pad; }
  std::string kind() const override { return "hf_bpe"; }
  std::string content_hash() const override { return hash_; }

 private:
  static void split_added(const AddedTokenMatcher& matcher, std::string_view text,
                          std::vector<Segment>& out) {
    if (matcher.empty())
      out.push_back({0, text.size(), std::nullopt});
    else
      matcher.split(text, out);
  }

  // Decides whether stream_cut may cut, and after which characters.
  void find_stream_cuts(const std::vector<std::string>& raw_patterns,
                        const std::vector<AddedToken>& raw_tokens,
                        const std::vector<std::string>& norm_patterns,
                        const std::vector<AddedToken>& norm_tokens) {
    any_byte_cuts_ = model_.bytewise() && normalizer_.empty() &&
                     pre_tokenizer_.plain_byte_level() && raw_patterns.empty() &&
                     norm_patterns.empty();
    space_cuts_ = normalizer_.only_nfc() && pre_tokenizer_.splits_before_spaces();
    for (int c = 0x21; c < 0x7F; ++c)
      cut_after_[c] = true;
    const auto exclude = [&](const std::vector<std::string>& patterns,
                             const std::vector<AddedToken>& tokens) {
      for (std::size_t i = 0; i < patterns.size(); ++i) {
        // A token holding a space could cover the cut or start at it (where single_word would
        // see another neighbour); then no cuts at all. GPT-NeoX-20B and Phi-2 have such tokens
        // (runs of spaces), so their texts are held whole.
        if (patterns[i].find(' ') != std::string::npos) space_cuts_ = false;
        // An rstrip token ending in c would swallow the space after it: no cut after c.
        if (tokens[i].rstrip && !patterns[i].empty())
          cut_after_[static_cast<unsigned char>(patterns[i].back())] = false;
        // An lstrip token swallows only whitespace before it, never c: the text after the cut
        // swallows the same.
      }
    };
    exclude(raw_patterns, raw_tokens);
    exclude(norm_patterns, norm_tokens);
  }

  BpeModel model_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  // An added token's text for decode, and whether decode drops it (a special token).
  struct AddedText {
    std::string text;
    bool dropped = false;
  };
  std::unordered_map<std::int32_t, AddedText> added_by_id_;
  AddedTokenMatcher raw_matcher_, norm_matcher_;
  SpecialIds special_;
  std::int32_t vocab_size_ = 0;
  std::string hash_;
  bool space_cuts_ = false;
  bool any_byte_cuts_ = false;
  std::array<bool, 256> cut_after_{};  // c after which a space may be cut before
};

// A token id as tokenizer.json writes it: a JSON integer in [0, 2^31 - 2] (the vocabulary's size,
// the largest id + 1, must fit an int32 too: 2^31 - 1 overflowed it). A float, a negative or a
// larger number is refused by name, never converted (a double past int32 converted to it is
// undefined behaviour; a fuzzed vocabulary id of 2e9 once sized a 64 GB table).
// `what` and `name` name the token in the error ("vocabulary token", its text): formatted only
// then, not for each of a vocabulary's entries.
std::int32_t token_id(const json& value, std::string_view what, std::string_view name) {
  constexpr std::int64_t kMaxId = INT32_MAX - 1;
  if (value.is_number_unsigned() && value.get<std::uint64_t>() <= std::uint64_t{kMaxId})
    return static_cast<std::int32_t>(value.get<std::uint64_t>());
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0 &&
      value.get<std::int64_t>() <= kMaxId)
    return static_cast<std::int32_t>(value.get<std::int64_t>());
  fail("{} '{}' has the id {}: token ids are integers from 0 to {}", what, name, value.dump(),
       kMaxId);
}

BpeModelConfig parse_model(const json& model) {
  std::string type = model.value("type", "");
  if (type.empty() && model.contains("merges")) type = "BPE";  // as `tokenizers` infers it
  if (type != "BPE")
    fail("model type '{}' is not supported (only BPE tokenizer.json files are)", type);
  if (model.contains("dropout") && !model.at("dropout").is_null() &&
      model.at("dropout").get<double>() > 0.0)
    fail("BPE dropout is not supported (it makes encoding random)");

  BpeModelConfig config;
  for (const auto& [token, id] : model.at("vocab").items())
    config.vocab.emplace_back(token, token_id(id, "vocabulary token", token));
  for (const json& merge : model.at("merges")) {
    if (merge.is_string()) {
      // Legacy "a b": exactly one space, as `tokenizers` requires.
      const std::string& line = merge.get_ref<const std::string&>();
      const std::size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        fail("merge '{}' is not two tokens separated by one space", line);
      config.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2) {
      config.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      fail("merge {} is neither \"a b\" nor [\"a\", \"b\"]", merge.dump());
    }
  }
  auto optional_string = [&](const char* key) -> std::optional<std::string> {
    if (!model.contains(key) || model.at(key).is_null()) return std::nullopt;
    return model.at(key).get<std::string>();
  };
  config.unk_token = optional_string("unk_token");
  config.continuing_subword_prefix = optional_string("continuing_subword_prefix").value_or("");
  config.end_of_word_suffix = optional_string("end_of_word_suffix").value_or("");
  config.fuse_unk = model.value("fuse_unk", false);
  config.byte_fallback = model.value("byte_fallback", false);
  config.ignore_merges = model.value("ignore_merges", false);
  return config;
}

std::vector<AddedToken> parse_added_tokens(const json& spec) {
  std::vector<AddedToken> tokens;
  if (spec.is_null()) return tokens;
  for (const json& t : spec) {
    AddedToken token;
    token.content = t.at("content").get<std::string>();
    token.id = token_id(t.at("id"), "added token", token.content);
    token.special = t.value("special", false);
    token.single_word = t.value("single_word", false);
    token.lstrip = t.value("lstrip", false);
    token.rstrip = t.value("rstrip", false);
    token.normalized = t.value("normalized", !token.special);
    if (token.content.empty()) continue;  // `tokenizers` ignores empty added tokens
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// bos and eos from a TemplateProcessing post-processor, bos from a RobertaProcessing or
// BertProcessing one (see the file comment).
void special_from_template(const json& processor, SpecialIds& ids) {
  if (processor.is_null()) return;
  const std::string type = processor.value("type", "");
  if (type == "Sequence") {
    for (const json& p : processor.at("processors"))
      special_from_template(p, ids);
    return;
  }
  if ((type == "RobertaProcessing" || type == "BertProcessing") && processor.contains("cls")) {
    // "cls": ["<s>", 0]: `tokenizers` puts it before the sequence.
    const json& cls = processor.at("cls");
    if (!ids.bos && cls.is_array() && cls.size() == 2)
      ids.bos = token_id(cls[1], "special token",
                         cls[0].is_string() ? cls[0].get<std::string>() : cls[0].dump());
    return;
  }
  if (type != "TemplateProcessing" || !processor.contains("single")) return;
  auto id_of = [&](const json& piece) -> std::optional<std::int32_t> {
    const std::string name = piece.at("SpecialToken").at("id");
    const json& tokens = processor.value("special_tokens", json::object());
    if (!tokens.contains(name) || tokens.at(name).at("ids").empty()) return std::nullopt;
    return token_id(tokens.at(name).at("ids")[0], "special token", name);
  };
  bool seen_sequence = false;
  for (const json& piece : processor.at("single")) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
    } else if (piece.contains("SpecialToken")) {
      if (!seen_sequence && !ids.bos) ids.bos = id_of(piece);
      if (seen_sequence && !ids.eos) ids.eos = id_of(piece);
    }
  }
}

std::optional<std::int32_t> first_known(const std::vector<AddedToken>& added, const BpeModel& model,
                                        std::initializer_list<std::string_view> names) {
  for (const std::string_view name : names)
    for (const AddedToken& t : added)
      if (t.content == name) return t.id;
  for (const std::string_view name : names)
    if (auto id = model.token_to_id(name)) return id;
  return std::nullopt;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  const std::string bytes = core::read_regular_file(path, "the tokenizer");
  try {
    const json root = core::parse_json(bytes, "tokenizer.json");
    require(root.is_object() && root.contains("model"), "no \"model\" object");
    BpeModelConfig config = parse_model(root.at("model"));
    const json null;
    auto field = [&](const char* key) -> const json& {
      return root.contains(key) ? root.at(key) : null;
    };
    Normalizer normalizer = Normalizer::from_json(field("normalizer"));
    PreTokenizer pre_tokenizer = PreTokenizer::from_json(field("pre_tokenizer"));
    Decoder decoder = Decoder::from_json(field("decoder"));
    std::vector<AddedToken> added = parse_added_tokens(field("added_tokens"));
    config.byte_level = pre_tokenizer.byte_level();
    BpeModel model(std::move(config));

    SpecialIds special;
    special_from_template(field("post_processor"), special);
    special.prompt_bos = special.bos;
    if (!special.bos)
      special.bos =
          first_known(added, model, {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"});
    if (!special.eos)
      special.eos = first_known(
          added, model, {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"});
    special.pad = first_known(
        added, model, {"<pad>", "<|pad|>", "[PAD]", "<|padding|>", "<|finetune_right_pad_id|>"});
    return std::make_unique<HfBpeTokenizer>(std::move(model), std::move(normalizer),
                                            std::move(pre_tokenizer), std::move(decoder),
                                            std::move(added), special, core::hash_bytes_hex(bytes));
  } catch (const json::exception& e) {
    fail("tokenizer '{}': not a valid tokenizer.json: {}", path, e.what());
  } catch (const Error& e) {
    fail("tokenizer '{}': {}", path, e.what());
  }
}

}  // namespace anchorctx::data
