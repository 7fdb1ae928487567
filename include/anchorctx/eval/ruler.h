// RULER-style retrieval tasks (needle in a haystack), generated from a seed at any context
// length counted in the model's own tokens, under RULER's names and key/value types
// (../shared/PAPER.md section 5):
//   niah_single_1   noise haystack, word keys, 7-digit number values
//   niah_single_2   prose haystack, word keys, numbers
//   niah_single_3   prose haystack, word keys, UUID values
//   niah_multikey_1 prose haystack, 4 needles with distinct keys, one asked
//   niah_multikey_2 the haystack is needles (word keys, numbers), one asked
//   niah_multikey_3 the same with UUID keys and values
//   niah_multivalue one key with 4 values, all asked
//   niah_multiquery 4 keys asked at once
// The template set may override the key and value types (the `kv` set: 4-digit keys, the
// built-in corpus's value words, as its retrieval documents have them).
//
// Sizing: the haystack is whole pieces of text (a word with the spaces after it), as many as fit
// so that the prompt's tokens plus the tokens to generate stay within the length (binary search
// on the real tokenizer). The asked needle goes at the sentence boundary nearest the stated
// depth (0 = start of the haystack, 1 = end); other needles at seeded random depths.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/templates.h"

namespace anchorctx::eval {

struct NiahTask {
  std::string name;
  enum class Haystack { noise, prose, needles } haystack = Haystack::prose;
  enum class Type { words, numbers, uuids } key_type = Type::words, value_type = Type::numbers;
  int needles = 1;  // distinct keys inserted (multikey: distractors)
  int values = 1;   // values of the asked key (multivalue)
  int queries = 1;  // keys asked (multiquery)
};

// Every task this module generates, in RULER's order; nullptr for an unknown name.
const std::vector<NiahTask>& niah_tasks();
const NiahTask* find_niah_task(const std::string& name);

struct TaskSample {
  std::string task;
  std::int64_t length = 0;               // the target length in tokens
  double depth = 0.0;                    // the stated depth of the asked needle
  std::vector<std::int32_t> prompt_ids;  // prompt bos (when the tokenizer has one) + the prompt
  std::string prompt;
  std::vector<std::string> answers;  // what string_match_all looks for
  // Character offsets in `prompt`: where the context starts and ends, and where the needle of
  // each answer starts (in the order of `answers`; the first at the stated depth).
  std::size_t context_begin = 0, context_end = 0;
  std::vector<std::size_t> needle_offsets;
  // The asked needles' actual depths: haystack characters before each / all haystack characters
  // (needle text not counted).
  std::vector<double> needle_depths;
  std::size_t haystack_chars = 0;
  std::int64_t tokens_to_generate = 0;
};

class NiahGenerator {
 public:
  // `haystack_text`: the prose the prose haystack is cut from (read whole, wrapped around when
  // a prompt needs more). Throws anchorctx::Error when it holds no sentence end.
  NiahGenerator(const data::Tokenizer& tokenizer, std::string haystack_text, TemplateSet templates);

  // One sample; the same (task, length, depth, seed) gives the same sample. Throws
  // anchorctx::Error when the length cannot hold the task's text without haystack, or the task
  // needs more distinct keys than its key type has.
  TaskSample make(const NiahTask& task, std::int64_t length, double depth,
                  std::uint64_t seed) const;

 private:
  const data::Tokenizer& tokenizer_;
  TemplateSet templates_;
  std::vector<std::string> prose_, noise_;  // pieces: a word and the whitespace after it
};

// The built-in corpus's prose (retrieval documents left out), for the default haystack.
std::string builtin_prose(std::int64_t documents = 600);

// RULER's string_match_all for one sample: the fraction of `answers` found in `output`,
// case-insensitively.
double string_match_all(const std::string& output, const std::vector<std::string>& answers);

}  // namespace anchorctx::eval
