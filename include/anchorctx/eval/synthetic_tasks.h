// RULER's non-needle synthetic tasks, generated from a seed at any context length counted in the
// model's own tokens, under RULER's names and with its setups (../shared/PAPER.md section 5):
//   vt   variable tracking: one chain of 5 variables ("VAR ABCDE = 12345", then
//        "VAR FGHIJ = VAR ABCDE" 4 times) at random places among repeated noise lines; asked for
//        the value, the answer is all 5 names. A one-shot example (3-letter names, 6 noise lines)
//        comes first, as RULER's prompts have one.
//   cwe  common words extraction: a numbered list "1. word 2. word ..." where 10 words appear 30
//        times and the others 3 times (6 and 1 below 4096 tokens, as RULER); the answer is the 10
//        common words. A one-shot example with its answer comes first (40 words 10/3 times; 20
//        words 3/1 times below 4096).
//   fwe  frequent words extraction: coded words (6 random lowercase letters) drawn from a Zipf
//        distribution (alpha 2: rank k appears floor(N k^-2 / zeta(2)) times), rank 1 being the
//        noise word "..."; a vocabulary of (length - tokens to generate) / 50 words; the answer is
//        ranks 2-4, the three most frequent coded words.
// cwe's words: the distinct lowercase words (3-12 letters) of the given text (the haystack prose),
// then, when a length needs more, made-up words of three consonant-vowel syllables ("bakori").
//
// Sizing: the count of haystack units (vt noise lines, cwe distinct words, fwe words drawn) is
// the largest whose prompt's tokens (bos included) plus the tokens to generate fit the length
// (exponential then binary search on the real tokenizer). So one more unit would not fit: the
// prompt falls short by less than one unit (a noise line, 3 list entries, a few coded words).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/ruler.h"
#include "anchorctx/eval/templates.h"

namespace anchorctx::eval {

// vt, cwe, fwe.
const std::vector<std::string>& synthetic_task_names();
bool is_synthetic_task(const std::string& name);

// The seed of sample `sample` (0-based) of a vt, cwe or fwe cell in a run with `seed`: number
// sample + 1 of the splitmix64 stream started at `seed` (splitmix64 of seed + sample x
// 0x9E3779B97F4A7C15). Runs with different seeds share no sample (seed + sample, the niah
// rule, made --seed 6's samples 0..n-2 those of --seed 5's 1..n-1: these tasks mix no depth in).
std::uint64_t synthetic_sample_seed(std::uint64_t seed, std::int64_t sample);

class SyntheticGenerator {
 public:
  // `word_text`: the text cwe draws its words from. `templates` must have the templates of the
  // tasks asked (checked by make).
  SyntheticGenerator(const data::Tokenizer& tokenizer, const std::string& word_text,
                     TemplateSet templates);

  // One sample; the same (task, length, seed) gives the same sample. The sample's depth is NaN
  // (these tasks have none); needle_offsets and needle_depths are empty. Throws anchorctx::Error
  // for an unknown task, a template set without the task's template, or a length too short
  // for the task's smallest instance.
  TaskSample make(const std::string& task, std::int64_t length, std::uint64_t seed) const;

  // cwe's real words (before any made-up ones), sorted; for tests.
  const std::vector<std::string>& words() const { return words_; }

 private:
  TaskSample variable_tracking(std::int64_t length, std::uint64_t seed) const;
  TaskSample common_words(std::int64_t length, std::uint64_t seed) const;
  TaskSample frequent_words(std::int64_t length, std::uint64_t seed) const;
  // Fills prompt_ids from prompt and says whether prompt + tokens to generate fit `length`.
  bool encode_fits(TaskSample& s, std::int64_t length) const;

  const data::Tokenizer& tokenizer_;
  TemplateSet templates_;
  std::vector<std::string> words_;
};

}  // namespace anchorctx::eval
