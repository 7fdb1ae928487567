// vt, cwe and fwe (synthetic_tasks.h): each task draws what does not depend on the prompt's size
// once (names, values, the word order), then finds the largest haystack that fits the length.
#include "anchorctx/eval/synthetic_tasks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numbers>
#include <set>

#include "anchorctx/core/error.h"
#include "eval/task_random.h"

namespace anchorctx::eval {
namespace {

// The largest n in [lo, hi] with fits(n), given fits(lo): doubling, then bisection. Prompt length
// grows with n (up to a tokenizer's merges at the seams), which the search assumes.
template <class Fits>
std::int64_t largest_fitting(std::int64_t lo, std::int64_t hi, Fits&& fits) {
  std::int64_t step = 1;
  while (lo + step <= hi && fits(lo + step)) {
    lo += step;
    step *= 2;
  }
  std::int64_t bad = std::min(lo + step, hi + 1);  // does not fit (or is past hi)
  while (bad - lo > 1) {
    const std::int64_t mid = lo + (bad - lo) / 2;
    (fits(mid) ? lo : bad) = mid;
  }
  return lo;
}

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string random_letters(TaskRng& rng, int n, char first) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += static_cast<char>(first + static_cast<char>(rng.below(26)));
  return s;
}

// The i-th made-up word: three consonant-vowel syllables (14 x 5 = 70 syllables, 343000 words).
std::string made_up_word(std::size_t i) {
  static constexpr const char* kConsonants = "bdfgklmnprstvz";
  static constexpr const char* kVowels = "aeiou";
  std::string w;
  for (int s = 0; s < 3; ++s) {
    const std::size_t syllable = i % 70;
    i /= 70;
    w += kConsonants[syllable / 5];
    w += kVowels[syllable % 5];
  }
  return w;
}

// "1. a 2. b ..." as RULER numbers its lists.
std::string numbered(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i)
    out += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
  return out;
}

// Five distinct names of `letters` uppercase letters whose lowercase form is not in `avoid`
// (the template and noise text: a name found there would score without being answered).
std::vector<std::string> variable_names(TaskRng& rng, int letters, const std::string& avoid,
                                        std::set<std::string>& used) {
  std::vector<std::string> names;
  while (names.size() < 5) {
    std::string n = random_letters(rng, letters, 'A');
    if (avoid.find(lower(n)) == std::string::npos && used.insert(n).second) names.push_back(n);
  }
  return names;
}

// The vt context: `units` noise lines with the chain's statements put before distinct ones
// (positions drawn by `rng`, in order, so the chain reads top to bottom), joined by spaces.
std::string chain_context(TaskRng rng, const std::vector<std::string>& names,
                          const std::string& value, const std::string& noise, std::int64_t units) {
  std::set<std::int64_t> at;
  while (at.size() < names.size())
    at.insert(static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(units))));
  std::vector<std::string> parts;
  auto next = at.begin();
  std::size_t j = 0;
  for (std::int64_t u = 0; u < units; ++u) {
    if (next != at.end() && *next == u) {
      parts.push_back(j == 0 ? "VAR " + names[0] + " = " + value
                             : "VAR " + names[j] + " = VAR " + names[j - 1] + " ");
      ++j;
      ++next;
    }
    parts.push_back(noise);
  }
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i)
    out += (i ? " " : "") + parts[i];
  // RULER's cleanup: a sentence end before a newline loses the space the join put there.
  for (std::size_t p = out.find(". \n"); p != std::string::npos; p = out.find(". \n", p))
    out.erase(p + 1, 1);
  return out;
}

}  // namespace

const std::vector<std::string>& synthetic_task_names() {
  static const std::vector<std::string> names = {"vt", "cwe", "fwe"};
  return names;
}

bool is_synthetic_task(const std::string& name) {
  const auto& n = synthetic_task_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

std::uint64_t synthetic_sample_seed(std::uint64_t seed, std::int64_t sample) {
  std::uint64_t state = seed + static_cast<std::uint64_t>(sample) * 0x9E3779B97F4A7C15ull;
  return core::splitmix64(state);
}

SyntheticGenerator::SyntheticGenerator(const data::Tokenizer& tokenizer,
                                       const std::string& word_text, TemplateSet templates)
    : tokenizer_(tokenizer), templates_(std::move(templates)) {
  std::set<std::string> words;
  std::string w;
  for (std::size_t i = 0; i <= word_text.size(); ++i) {
    const char c = i < word_text.size() ? word_text[i] : ' ';
    if (std::isalpha(static_cast<unsigned char>(c))) {
      w += c;
      continue;
    }
    const bool lower_only =
        std::all_of(w.begin(), w.end(), [](char x) { return x >= 'a' && x <= 'z'; });
    if (lower_only && w.size() >= 3 && w.size() <= 12) words.insert(w);
    w.clear();
  }
  words_.assign(words.begin(), words.end());
}

bool SyntheticGenerator::encode_fits(TaskSample& s, std::int64_t length) const {
  s.prompt_ids.clear();
  if (const auto bos = tokenizer_.prompt_bos_id()) s.prompt_ids.push_back(*bos);
  const std::vector<std::int32_t> text = tokenizer_.encode(s.prompt);
  s.prompt_ids.insert(s.prompt_ids.end(), text.begin(), text.end());
  return static_cast<std::int64_t>(s.prompt_ids.size()) + s.tokens_to_generate <= length;
}

TaskSample SyntheticGenerator::make(const std::string& task, std::int64_t length,
                                    std::uint64_t seed) const {
  TaskSample s;
  if (task == "vt")
    s = variable_tracking(length, seed);
  else if (task == "cwe")
    s = common_words(length, seed);
  else if (task == "fwe")
    s = frequent_words(length, seed);
  else
    fail("unknown synthetic task '{}' (known: vt, cwe, fwe)", task);
  s.task = task;
  s.length = length;
  s.depth = std::nan("");
  return s;
}

TaskSample SyntheticGenerator::variable_tracking(std::int64_t length, std::uint64_t seed) const {
  const TaskTemplate& t = templates_.task_template("vt");
  TaskRng rng{mix_seed(seed, "vt", length, 0.0)};
  const std::string avoid = lower(t.task + t.answer_prefix + t.noise);
  std::set<std::string> used;
  const std::vector<std::string> names = variable_names(rng, 5, avoid, used);
  const std::string value = std::to_string(10000 + rng.below(90000));
  const std::vector<std::string> example_names = variable_names(rng, 3, avoid, used);
  const std::string example_value = std::to_string(10000 + rng.below(90000));
  const TaskRng positions = rng;  // the statements' places, the same draws at every size

  const auto question = [&](const std::string& context, const std::string& v) {
    const std::string num_v = std::to_string(names.size());
    return fill(t.task, {{"context", context}, {"query", v}}) +
           fill(t.answer_prefix, {{"num_v", num_v}, {"query", v}});
  };
  std::string example_answer;
  for (const std::string& n : example_names)
    example_answer += (example_answer.empty() ? "" : " ") + n;
  // RULER's one-shot example: a small instance with its answer, then a blank line.
  std::string example =
      question(chain_context(positions, example_names, example_value, t.noise, 6), example_value);
  if (example.empty() || !std::isspace(static_cast<unsigned char>(example.back()))) example += ' ';
  example += example_answer + "\n\n";
  const std::size_t ctx_at = t.task.find("{context}");
  const std::string before = example + fill(t.task.substr(0, ctx_at), {{"query", value}});

  TaskSample s;
  s.tokens_to_generate = t.tokens_to_generate;
  s.answers = names;
  const auto build = [&](std::int64_t units) {
    const std::string context = chain_context(positions, names, value, t.noise, units);
    s.prompt = example + question(context, value);
    s.context_begin = before.size();
    s.context_end = before.size() + context.size();
    return encode_fits(s, length);
  };
  const std::int64_t least = static_cast<std::int64_t>(names.size());
  if (!build(least))
    fail("vt does not fit {} tokens even with {} noise lines ({} prompt tokens + {} to generate)",
         length, least, s.prompt_ids.size(), s.tokens_to_generate);
  build(largest_fitting(least, length, build));
  return s;
}

TaskSample SyntheticGenerator::common_words(std::int64_t length, std::uint64_t seed) const {
  const TaskTemplate& t = templates_.task_template("cwe");
  TaskRng rng{mix_seed(seed, "cwe", length, 0.0)};
  constexpr std::int64_t kCommon = 10;
  // RULER's repeats: common/uncommon 30/3 (example 10/3 over 40 words) from 4096 tokens, else 6/1
  // (example 3/1 over 20 words).
  const bool long_prompt = length >= 4096;
  const std::int64_t common_repeats = long_prompt ? 30 : 6, rare_repeats = long_prompt ? 3 : 1;
  const std::int64_t example_words = long_prompt ? 40 : 20;
  const std::int64_t example_common = long_prompt ? 10 : 3, example_rare = long_prompt ? 3 : 1;

  std::vector<std::string> order = words_;  // the real words in this sample's order
  rng.shuffle(order);
  std::vector<std::string> example_order = words_;
  rng.shuffle(example_order);
  const std::set<std::string> real(words_.begin(), words_.end());
  std::size_t made_up = 0;
  const auto words_for = [&](std::vector<std::string>& from, std::int64_t n) {
    while (static_cast<std::int64_t>(from.size()) < n) {  // past the real words: made-up ones
      const std::string w = made_up_word(made_up++);
      if (!real.count(w)) from.push_back(w);
    }
    return std::vector<std::string>(from.begin(), from.begin() + n);
  };
  const TaskRng list_rng = rng;  // the list's order, the same draws at every size
  const auto list = [&](const std::vector<std::string>& words, std::int64_t common,
                        std::int64_t rare) {
    std::vector<std::string> entries;
    for (std::size_t i = 0; i < words.size(); ++i)
      for (std::int64_t r = 0; r < (static_cast<std::int64_t>(i) < kCommon ? common : rare); ++r)
        entries.push_back(words[i]);
    TaskRng shuffle_rng = list_rng;
    shuffle_rng.shuffle(entries);
    return numbered(entries);
  };
  const std::vector<std::string> example_list = words_for(example_order, example_words);
  const std::vector<std::string> example_answer(example_list.begin(),
                                                example_list.begin() + kCommon);
  // RULER passes an empty query to these templates.
  const auto prompt_of = [&](const std::string& context) {
    return fill(t.task, {{"context", context}, {"query", ""}}) +
           fill(t.answer_prefix, {{"query", ""}});
  };
  const std::string example = prompt_of(list(example_list, example_common, example_rare)) + " " +
                              numbered(example_answer) + "\n";
  const std::size_t ctx_at = t.task.find("{context}");
  const std::string before = example + fill(t.task.substr(0, ctx_at), {{"query", ""}});

  TaskSample s;
  s.tokens_to_generate = t.tokens_to_generate;
  const auto build = [&](std::int64_t n) {
    const std::vector<std::string> chosen = words_for(order, n);
    const std::string context = list(chosen, common_repeats, rare_repeats);
    s.prompt = example + prompt_of(context);
    s.context_begin = before.size();
    s.context_end = before.size() + context.size();
    s.answers.assign(chosen.begin(), chosen.begin() + kCommon);
    return encode_fits(s, length);
  };
  const std::int64_t least = kCommon + 1;
  if (!build(least))
    fail("cwe does not fit {} tokens even with {} words ({} prompt tokens + {} to generate){}",
         length, least, s.prompt_ids.size(), s.tokens_to_generate,
         long_prompt ? "; from 4096 tokens on, RULER repeats each common word 30 times and its "
                       "example lists 40 words (about 6K tokens with a byte tokenizer)"
                     : "");
  build(largest_fitting(least, length, build));
  return s;
}

TaskSample SyntheticGenerator::frequent_words(std::int64_t length, std::uint64_t seed) const {
  const TaskTemplate& t = templates_.task_template("fwe");
  TaskRng rng{mix_seed(seed, "fwe", length, 0.0)};
  const std::int64_t vocab_size = std::max<std::int64_t>(5, (length - t.tokens_to_generate) / 50);
  std::vector<std::string> vocab = {"..."};  // rank 1: the noise word
  std::set<std::string> seen(vocab.begin(), vocab.end());
  while (static_cast<std::int64_t>(vocab.size()) < vocab_size) {
    std::string w = random_letters(rng, 6, 'a');
    if (seen.insert(w).second) vocab.push_back(std::move(w));
  }
  // Zipf with alpha 2: rank k (1-based) appears floor(n k^-2 / zeta(2)) times.
  const double zeta2 = std::numbers::pi * std::numbers::pi / 6.0;
  const auto count = [&](std::int64_t n, std::size_t k) {
    const double r = static_cast<double>(k + 1);
    return static_cast<std::int64_t>(static_cast<double>(n) / (r * r) / zeta2);
  };
  const TaskRng list_rng = rng;
  const std::size_t ctx_at = t.task.find("{context}");
  const std::string before = fill(t.task.substr(0, ctx_at), {{"query", ""}});

  TaskSample s;
  s.tokens_to_generate = t.tokens_to_generate;
  s.answers = {vocab[1], vocab[2], vocab[3]};
  const auto build = [&](std::int64_t n) {
    std::vector<const std::string*> drawn;
    for (std::size_t k = 0; k < vocab.size(); ++k)
      for (std::int64_t c = count(n, k); c > 0; --c)
        drawn.push_back(&vocab[k]);
    TaskRng shuffle_rng = list_rng;
    shuffle_rng.shuffle(drawn);
    std::string context;
    for (std::size_t i = 0; i < drawn.size(); ++i)
      context += (i ? " " : "") + *drawn[i];
    s.prompt = fill(t.task, {{"context", context}, {"query", ""}}) +
               fill(t.answer_prefix, {{"query", ""}});
    s.context_begin = before.size();
    s.context_end = before.size() + context.size();
    return encode_fits(s, length);
  };
  // The answer must be unique: rank 4 strictly more frequent than rank 5, which holds from
  // n = 73 on (their expected counts differ by n (1/16 - 1/25) / zeta(2) >= 1).
  const std::int64_t least = 73;
  if (!build(least))
    fail("fwe does not fit {} tokens even with {} words ({} prompt tokens + {} to generate)",
         length, least, s.prompt_ids.size(), s.tokens_to_generate);
  build(largest_fitting(least, length * 4, build));
  return s;
}

}  // namespace anchorctx::eval
