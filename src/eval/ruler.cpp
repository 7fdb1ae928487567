// The needle-in-a-haystack generator (ruler.h): keys and values drawn from a seed, needles put
// at sentence boundaries, the haystack sized on the model's tokenizer by binary search.
#include "anchorctx/eval/ruler.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string_view>

#include "anchorctx/core/error.h"
#include "anchorctx/core/random.h"
#include "anchorctx/data/builtin_corpus.h"
#include "eval/task_random.h"

namespace anchorctx::eval {
namespace {

using Type = NiahTask::Type;
using Haystack = NiahTask::Haystack;

// Adjective-noun keys as RULER writes them ("shiny-lantern"). A prompt draws its keys from the
// first kFirstWords words of each list (48 x 48 = 2304 keys: the lists as they first were) until
// it has used all of those, then from the whole lists (160 x 160 = 25600 keys): a prompt that
// fits in 2304 keys is the one the 48-word lists gave, and a needle haystack (niah_multikey_2)
// has keys for 128K tokens with any common tokenizer (docs/EVAL.md gives the limit).
constexpr std::size_t kFirstWords = 48;
constexpr std::array<std::string_view, 160> kAdjectives = {
    "amber",  "brave",    "calm",    "dusty",  "eager",  "faded",  "gentle", "hollow",  "icy",
    "jolly",  "kind",     "lively",  "misty",  "noble",  "odd",    "plain",  "quiet",   "rapid",
    "shiny",  "tidy",     "upset",   "vivid",  "witty",  "young",  "zesty",  "bitter",  "cosmic",
    "damp",   "early",    "fierce",  "grumpy", "humble", "idle",   "jagged", "keen",    "lucky",
    "modest", "narrow",   "orange",  "polite", "rusty",  "silent", "tender", "urban",   "velvet",
    "wild",   "yellow",   "zealous", "big",    "small",  "tall",   "short",  "long",    "wide",
    "deep",   "high",     "old",     "new",    "fresh",  "warm",   "cold",   "hot",     "cool",
    "dry",    "wet",      "soft",    "hard",   "smooth", "rough",  "sharp",  "bright",  "dark",
    "light",  "heavy",    "thin",    "thick",  "fast",   "slow",   "loud",   "sweet",   "sour",
    "salty",  "spicy",    "clean",   "rich",   "happy",  "proud",  "shy",    "bold",    "wise",
    "clever", "funny",    "busy",    "lazy",   "sleepy", "hungry", "golden", "silver",  "green",
    "blue",   "red",      "purple",  "pink",   "brown",  "gray",   "violet", "crimson", "scarlet",
    "royal",  "grand",    "tiny",    "giant",  "huge",   "little", "round",  "square",  "flat",
    "curly",  "fuzzy",    "fluffy",  "shaggy", "sturdy", "steady", "swift",  "quick",   "brisk",
    "merry",  "cheerful", "sunny",   "cloudy", "rainy",  "snowy",  "windy",  "foggy",   "stormy",
    "frozen", "wooden",   "sandy",   "muddy",  "grassy", "leafy",  "rocky",  "silky",   "woolly",
    "crisp",  "ancient",  "modern",  "secret", "hidden", "famous", "loyal",  "honest",  "friendly",
    "fair",   "pale",     "neat",    "ripe",   "pure",   "wavy",   "vast"};
constexpr std::array<std::string_view, 160> kNouns = {
    "anchor",  "basket",  "candle",  "desert",  "engine",  "falcon",  "garden",    "harbor",
    "island",  "jacket",  "kettle",  "ladder",  "marble",  "needle",  "oyster",    "pepper",
    "quarry",  "ribbon",  "saddle",  "tunnel",  "umpire",  "violin",  "wagon",     "yogurt",
    "zipper",  "bridge",  "cactus",  "dolphin", "feather", "glacier", "hammer",    "igloo",
    "jungle",  "kitten",  "lantern", "meadow",  "nickel",  "orchard", "pillow",    "quiver",
    "rocket",  "spider",  "teapot",  "unicorn", "valley",  "walnut",  "xylophone", "zebra",
    "apple",   "banana",  "cherry",  "lemon",   "melon",   "peach",   "pear",      "plum",
    "grape",   "mango",   "carrot",  "potato",  "tomato",  "onion",   "bread",     "butter",
    "cheese",  "cookie",  "muffin",  "pancake", "honey",   "cocoa",   "coffee",    "sugar",
    "salad",   "soup",    "table",   "chair",   "sofa",    "lamp",    "clock",     "mirror",
    "window",  "door",    "carpet",  "blanket", "bucket",  "bottle",  "plate",     "spoon",
    "fork",    "bowl",    "pencil",  "crayon",  "book",    "crown",   "button",    "shoe",
    "hat",     "scarf",   "glove",   "tent",    "boat",    "ship",    "train",     "bicycle",
    "kite",    "balloon", "drum",    "flute",   "guitar",  "piano",   "trumpet",   "bell",
    "whistle", "river",   "lake",    "ocean",   "beach",   "forest",  "mountain",  "hill",
    "cave",    "canyon",  "pond",    "cloud",   "moon",    "star",    "planet",    "comet",
    "tiger",   "lion",    "bear",    "wolf",    "fox",     "rabbit",  "squirrel",  "turtle",
    "frog",    "owl",     "eagle",   "parrot",  "penguin", "whale",   "shark",     "horse",
    "pony",    "goat",    "sheep",   "camel",   "monkey",  "panda",   "koala",     "beaver",
    "otter",   "duck",    "robin",   "beetle",  "snail",   "puppy",   "castle",    "tower"};

using Rng = TaskRng;

std::string uuid(Rng& rng) {
  const std::uint64_t a = rng.next(), b = rng.next();
  char buf[40];
  std::snprintf(
      buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
      static_cast<unsigned long long>(a >> 32), static_cast<unsigned long long>((a >> 16) & 0xFFFF),
      static_cast<unsigned long long>(a & 0xFFFF), static_cast<unsigned long long>(b >> 48),
      static_cast<unsigned long long>(b & 0xFFFFFFFFFFFFull));
  return buf;
}

// The pieces of `text`: each a run of non-space characters and the whitespace after it.
std::vector<std::string> pieces_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t i = text.find_first_not_of(" \t\n\r");
  while (i != std::string::npos && i < text.size()) {
    std::size_t end = text.find_first_of(" \t\n\r", i);
    if (end == std::string::npos) end = text.size();
    const std::size_t next = text.find_first_not_of(" \t\n\r", end);
    const std::size_t stop = next == std::string::npos ? text.size() : next;
    out.push_back(text.substr(i, stop - i));
    i = next;
  }
  return out;
}

// A piece that ends a sentence: its last non-space character is . ! or ?, and whitespace follows.
bool ends_sentence(const std::string& piece) {
  const std::size_t last = piece.find_last_not_of(" \t\n\r");
  if (last == std::string::npos || last + 1 == piece.size()) return false;
  const char c = piece[last];
  return c == '.' || c == '!' || c == '?';
}

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

const std::vector<NiahTask>& niah_tasks() {
  static const std::vector<NiahTask> tasks = {
      {"niah_single_1", Haystack::noise, Type::words, Type::numbers, 1, 1, 1},
      {"niah_single_2", Haystack::prose, Type::words, Type::numbers, 1, 1, 1},
      {"niah_single_3", Haystack::prose, Type::words, Type::uuids, 1, 1, 1},
      {"niah_multikey_1", Haystack::prose, Type::words, Type::numbers, 4, 1, 1},
      {"niah_multikey_2", Haystack::needles, Type::words, Type::numbers, 1, 1, 1},
      {"niah_multikey_3", Haystack::needles, Type::uuids, Type::uuids, 1, 1, 1},
      {"niah_multivalue", Haystack::prose, Type::words, Type::numbers, 1, 4, 1},
      {"niah_multiquery", Haystack::prose, Type::words, Type::numbers, 4, 1, 4},
  };
  return tasks;
}

const NiahTask* find_niah_task(const std::string& name) {
  for (const NiahTask& t : niah_tasks())
    if (t.name == name) return &t;
  return nullptr;
}

std::string builtin_prose(std::int64_t documents) {
  data::BuiltinCorpusOptions options;
  options.documents = documents;
  options.retrieval_fraction = 0.0;
  std::string out;
  for (const std::string& d : data::builtin_corpus(options))
    out += d + "\n";
  return out;
}

NiahGenerator::NiahGenerator(const data::Tokenizer& tokenizer, std::string haystack_text,
                             TemplateSet templates)
    : tokenizer_(tokenizer), templates_(std::move(templates)) {
  prose_ = pieces_of(haystack_text);
  noise_ = pieces_of(templates_.noise);
  require(std::any_of(prose_.begin(), prose_.end(), ends_sentence),
          "niah: the haystack text holds no sentence end (. ! or ? followed by a space)");
  require(
      !noise_.empty() && ends_sentence(noise_.back() + (noise_.back().back() == ' ' ? "" : " ")),
      "niah: the template's noise text must end a sentence");
  if (!std::isspace(static_cast<unsigned char>(noise_.back().back()))) noise_.back() += ' ';
  if (!std::isspace(static_cast<unsigned char>(prose_.back().back()))) prose_.back() += ' ';
}

TaskSample NiahGenerator::make(const NiahTask& task, std::int64_t length, double depth,
                               std::uint64_t seed) const {
  require(depth >= 0.0 && depth <= 1.0, "niah: depth {} is outside [0, 1]", depth);
  Rng rng{mix_seed(seed, task.name, length, depth)};
  const bool kv_keys = templates_.keys == "numbers4";
  const bool corpus_values = templates_.values == "corpus_words";
  const Type key_type = kv_keys ? Type::numbers : task.key_type;
  if (corpus_values && (task.values > 1 || task.queries > 1))
    fail(
        "niah: task {} asks several values at once, which the template's answer format (one "
        "corpus word) cannot; use the ruler templates",
        task.name);
  const Type value_type = task.value_type;
  const std::string type_needle_v =
      corpus_values ? "words" : (value_type == Type::uuids ? "uuids" : "numbers");

  // Keys: distinct over the whole prompt (asked, distractors, haystack needles).
  std::set<std::string> used_keys, used_values;
  const std::size_t key_space = key_type == Type::uuids ? SIZE_MAX
                                : kv_keys               ? 9000
                                                        : kAdjectives.size() * kNouns.size();
  const auto new_key = [&]() -> std::string {
    if (used_keys.size() >= key_space)
      fail("niah: task {} at length {} needs more than the {} distinct keys its key type has",
           task.name, length, key_space);
    for (;;) {
      std::string k;
      if (key_type == Type::uuids)
        k = uuid(rng);
      else if (kv_keys)
        k = std::to_string(1000 + rng.below(9000));
      else {
        // The noun first, then the adjective: the order the draws have always had (they once
        // sat in one expression, whose order of evaluation C++ leaves to the compiler).
        const bool first_words = used_keys.size() < kFirstWords * kFirstWords;
        const std::size_t noun = rng.below(first_words ? kFirstWords : kNouns.size());
        const std::size_t adjective = rng.below(first_words ? kFirstWords : kAdjectives.size());
        k = std::string(kAdjectives[adjective]) + "-" + std::string(kNouns[noun]);
      }
      if (used_keys.insert(k).second) return k;
    }
  };
  const auto values_list = data::builtin_retrieval_values();
  const auto new_value = [&](bool distinct) -> std::string {
    for (;;) {
      std::string v = corpus_values ? std::string(values_list[rng.below(values_list.size())])
                      : value_type == Type::uuids ? uuid(rng)
                                                  : std::to_string(1000000 + rng.below(9000000));
      if (!distinct || corpus_values || used_values.insert(v).second) return v;
    }
  };
  const auto needle_text = [&](const std::string& k, const std::string& v) {
    return fill(templates_.needle, {{"key", k}, {"value", v}, {"type_needle_v", type_needle_v}});
  };

  // The needles: (depth, text, asked). The first asked one at the stated depth.
  struct Needle {
    double depth;
    std::string text;
    int asked;  // index among the asked needles (the order of `answers`), -1: a distractor
  };
  std::vector<Needle> needles;
  std::vector<std::string> asked_keys, answers;
  for (int n = 0; n < task.needles; ++n) {
    const std::string key = new_key();
    const bool asked = n < task.queries;
    if (asked) asked_keys.push_back(key);
    for (int v = 0; v < (asked ? task.values : 1); ++v) {
      const std::string value = new_value(true);
      if (asked) answers.push_back(value);
      needles.push_back({needles.empty() ? depth : rng.uniform(), needle_text(key, value),
                         asked ? static_cast<int>(answers.size()) - 1 : -1});
    }
  }
  std::string query;
  for (std::size_t i = 0; i < asked_keys.size(); ++i)
    query += (i == 0 ? "" : i + 1 == asked_keys.size() ? ", and " : ", ") + asked_keys[i];
  const std::map<std::string, std::string> vars = {{"query", query},
                                                   {"type_needle_v", type_needle_v}};

  // The haystack's pieces, made as far as a prompt asks for them.
  std::vector<std::string> hay;
  std::vector<bool> hay_boundary;  // a needle may go before piece i
  std::size_t prose_start = 0;
  if (task.haystack == Haystack::prose) {
    prose_start = rng.below(prose_.size());
    while (!ends_sentence(prose_[prose_start]))
      prose_start = (prose_start + 1) % prose_.size();
    prose_start = (prose_start + 1) % prose_.size();
  }
  const auto ensure = [&](std::size_t n) {
    while (hay.size() < n) {
      const std::size_t i = hay.size();
      const bool after_end = i == 0 || ends_sentence(hay.back());
      switch (task.haystack) {
        case Haystack::noise:
          hay.push_back(noise_[i % noise_.size()]);
          break;
        case Haystack::prose:
          hay.push_back(prose_[(prose_start + i) % prose_.size()]);
          break;
        case Haystack::needles: {
          // The value first, then the key, the order they have always had (once the compiler's
          // choice of argument order).
          const std::string value = new_value(false);
          const std::string key = new_key();
          hay.push_back(needle_text(key, value));
          break;
        }
      }
      hay_boundary.push_back(task.haystack == Haystack::needles || after_end);
    }
  };

  const std::string& tmpl = templates_.task;
  const std::size_t ctx_at = tmpl.find("{context}");
  const std::string before = fill(tmpl.substr(0, ctx_at), vars);
  const std::string after =
      fill(tmpl.substr(ctx_at + 9), vars) + fill(templates_.answer_prefix, vars);

  TaskSample s;
  const auto build = [&](std::size_t n) {
    ensure(n);
    // Boundaries for each needle: the one nearest depth * n.
    std::vector<std::size_t> bounds;
    for (std::size_t i = 0; i <= n; ++i)
      if (i == n || hay_boundary[i]) bounds.push_back(i);
    std::vector<std::pair<std::size_t, std::size_t>> at;  // (boundary, needle index)
    for (std::size_t k = 0; k < needles.size(); ++k) {
      const double want = needles[k].depth * static_cast<double>(n);
      std::size_t best = bounds.front();
      for (const std::size_t b : bounds)
        if (std::abs(static_cast<double>(b) - want) < std::abs(static_cast<double>(best) - want))
          best = b;
      at.emplace_back(best, k);
    }
    std::stable_sort(at.begin(), at.end());
    s.prompt = before;
    s.context_begin = s.prompt.size();
    s.needle_offsets.assign(answers.size(), 0);
    s.needle_depths.assign(answers.size(), 0.0);
    std::size_t next = 0, hay_chars = 0;
    for (std::size_t i = 0; i <= n; ++i) {
      while (next < at.size() && at[next].first == i) {
        const Needle& nd = needles[at[next].second];
        if (nd.asked >= 0) {
          s.needle_offsets[static_cast<std::size_t>(nd.asked)] = s.prompt.size();
          s.needle_depths[static_cast<std::size_t>(nd.asked)] = static_cast<double>(hay_chars);
        }
        s.prompt += nd.text;
        ++next;
      }
      if (i < n) {
        s.prompt += hay[i];
        hay_chars += hay[i].size();
      }
    }
    s.haystack_chars = hay_chars;
    for (double& d : s.needle_depths)
      d = hay_chars > 0 ? d / static_cast<double>(hay_chars) : 0.0;
    s.context_end = s.prompt.size();
    s.prompt += after;
    std::vector<std::int32_t> ids;
    if (const auto bos = tokenizer_.prompt_bos_id()) ids.push_back(*bos);
    const std::vector<std::int32_t> text = tokenizer_.encode(s.prompt);
    ids.insert(ids.end(), text.begin(), text.end());
    s.prompt_ids = std::move(ids);
    return static_cast<std::int64_t>(s.prompt_ids.size()) + templates_.tokens_to_generate <= length;
  };

  if (!build(0))
    fail(
        "niah: task {} does not fit {} tokens even without haystack ({} prompt tokens + {} to "
        "generate)",
        task.name, length, s.prompt_ids.size(), templates_.tokens_to_generate);
  // Exponential, then binary search for the most pieces that fit (each piece is >= 1 token).
  // A needle haystack takes a key per piece: at most the keys the asked needles leave (the
  // search would otherwise ask for up to twice the pieces that fit).
  const std::size_t key_cap = task.haystack == Haystack::needles
                                  ? key_space - static_cast<std::size_t>(task.needles)
                                  : SIZE_MAX;
  std::size_t lo = 0, hi = 64;
  const std::size_t cap = std::min(static_cast<std::size_t>(length), key_cap);
  while (hi < cap && build(hi)) {
    lo = hi;
    hi *= 2;
  }
  hi = std::min(hi, cap);
  if (build(hi)) lo = hi;
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    (build(mid) ? lo : hi) = mid;
  }
  if (lo == key_cap && key_cap < static_cast<std::size_t>(length))
    fail("niah: task {} at length {} needs more than the {} distinct keys its key type has",
         task.name, length, key_space);
  build(lo);
  s.task = task.name;
  s.length = length;
  s.depth = depth;
  s.answers = answers;
  s.tokens_to_generate = templates_.tokens_to_generate;
  return s;
}

double string_match_all(const std::string& output, const std::vector<std::string>& answers) {
  if (answers.empty()) return 0.0;
  const std::string out = lower(output);
  std::size_t found = 0;
  for (const std::string& a : answers)
    found += out.find(lower(a)) != std::string::npos;
  return static_cast<double>(found) / static_cast<double>(answers.size());
}

}  // namespace anchorctx::eval
