// The built-in corpus (see builtin_corpus.h): children's-story-like prose from a small grammar,
// and key-value retrieval documents.
//
// Determinism: every random choice comes from our own xoshiro256** (seeded with splitmix64), one
// stream per document (so the first n documents do not depend on how many are asked for), and
// integer or exactly rounded double arithmetic. The one place libm enters is the log-normal length
// (std::log, std::sqrt, std::exp), and that value is rounded to whole characters, so a last-bit
// difference between C libraries could show only on an exact .5 tie.
#include "anchorctx/data/builtin_corpus.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/core/random.h"

namespace anchorctx::data {
namespace {

// ---- random numbers ----

// xoshiro256** (Blackman and Vigna), its state filled from splitmix64 (core/random.h) as its
// authors advise.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (std::uint64_t& word : s_)
      word = core::splitmix64(seed);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n), n >= 1 (the high half of a 64 x 64 product: bias below 2^-32 for our n).
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(core::bits_below(next(), n)); }
  // Uniform in [lo, hi].
  int between(int lo, int hi) {
    return lo + static_cast<int>(below(static_cast<std::size_t>(hi - lo + 1)));
  }
  bool chance(double p) { return uniform() < p; }
  // Standard normal, Marsaglia's polar method (one value of the pair, the other dropped).
  double normal() {
    for (;;) {
      const double u = 2.0 * uniform() - 1.0, v = 2.0 * uniform() - 1.0;
      const double s = u * u + v * v;
      if (s > 0.0 && s < 1.0) return u * std::sqrt(-2.0 * std::log(s) / s);
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> s_;
};

// ---- the lexicon ----

// Draws an index in [0, n) with weight 1 / (i + 1) (Zipf's law with exponent 1): the first words
// of each list below are the common ones.
class ZipfIndex {
 public:
  explicit ZipfIndex(std::size_t n) {
    double total = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      cumulative_.push_back(total += 1.0 / static_cast<double>(i + 1));
    for (double& c : cumulative_)
      c /= total;
  }
  std::size_t operator()(Rng& rng) const {
    const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), rng.uniform());
    return std::min(static_cast<std::size_t>(it - cumulative_.begin()), cumulative_.size() - 1);
  }

 private:
  std::vector<double> cumulative_;
};

using namespace std::string_view_literals;

// A word list drawn with Zipf frequencies.
template <std::size_t N>
class Words {
 public:
  constexpr explicit Words(const std::array<std::string_view, N>& words) : words_(words) {}
  std::string_view pick(Rng& rng) const {
    static const ZipfIndex index(N);
    return words_[index(rng)];
  }
  std::size_t pick_index(Rng& rng) const {
    static const ZipfIndex index(N);
    return index(rng);
  }
  std::string_view operator[](std::size_t i) const { return words_[i]; }

 private:
  const std::array<std::string_view, N>& words_;
};

// A verb: base form ("catch") and past tense ("caught").
struct Verb {
  std::string_view base, past;
};
template <std::size_t N>
class Verbs {
 public:
  constexpr explicit Verbs(const std::array<Verb, N>& verbs) : verbs_(verbs) {}
  const Verb& pick(Rng& rng) const {
    static const ZipfIndex index(N);
    return verbs_[index(rng)];
  }

 private:
  const std::array<Verb, N>& verbs_;
};

constexpr std::array kGirls = {"Lily"sv, "Mia"sv,  "Anna"sv, "Sue"sv,   "Emma"sv,
                               "Zoe"sv,  "Kate"sv, "Lucy"sv, "Amy"sv,   "Rose"sv,
                               "Ella"sv, "Ruby"sv, "Jane"sv, "Grace"sv, "Molly"sv};
constexpr std::array kBoys = {"Tom"sv, "Ben"sv,  "Max"sv,  "Sam"sv,  "Leo"sv,
                              "Tim"sv, "Jack"sv, "Bob"sv,  "Joe"sv,  "Dan"sv,
                              "Ned"sv, "Finn"sv, "Jake"sv, "Luke"sv, "Paul"sv};
constexpr std::array kAnimals = {"cat"sv,   "dog"sv,    "bird"sv,     "rabbit"sv,   "bear"sv,
                                 "frog"sv,  "duck"sv,   "fox"sv,      "mouse"sv,    "owl"sv,
                                 "pig"sv,   "cow"sv,    "horse"sv,    "lion"sv,     "fish"sv,
                                 "bee"sv,   "turtle"sv, "squirrel"sv, "puppy"sv,    "kitten"sv,
                                 "sheep"sv, "goat"sv,   "monkey"sv,   "deer"sv,     "bunny"sv,
                                 "tiger"sv, "snake"sv,  "hen"sv,      "elephant"sv, "butterfly"sv};
// Family nouns and their pronoun (0 she, 1 he).
constexpr std::array kFamily = {"mom"sv,    "dad"sv,     "friend"sv, "grandma"sv, "grandpa"sv,
                                "sister"sv, "brother"sv, "aunt"sv,   "uncle"sv};
constexpr std::array kFamilyPronoun = {0, 1, 0, 0, 1, 0, 1, 0, 1};
constexpr std::array kPeople = {"teacher"sv, "farmer"sv, "baker"sv,    "king"sv,
                                "queen"sv,   "girl"sv,   "boy"sv,      "man"sv,
                                "lady"sv,    "doctor"sv, "neighbor"sv, "fisherman"sv};
constexpr std::array kThings = {
    "ball"sv,   "box"sv,     "book"sv,    "cake"sv,    "apple"sv,    "flower"sv,  "hat"sv,
    "boat"sv,   "kite"sv,    "toy"sv,     "car"sv,     "cup"sv,      "bag"sv,     "shoe"sv,
    "rock"sv,   "stick"sv,   "leaf"sv,    "star"sv,    "tree"sv,     "house"sv,   "door"sv,
    "bed"sv,    "chair"sv,   "drum"sv,    "bike"sv,    "train"sv,    "doll"sv,    "robot"sv,
    "key"sv,    "map"sv,     "coin"sv,    "egg"sv,     "cookie"sv,   "banana"sv,  "pie"sv,
    "shell"sv,  "feather"sv, "balloon"sv, "blanket"sv, "sandwich"sv, "crayon"sv,  "bucket"sv,
    "ring"sv,   "bell"sv,    "sock"sv,    "button"sv,  "puzzle"sv,   "picture"sv, "letter"sv,
    "pencil"sv, "candle"sv,  "basket"sv,  "jar"sv,     "rope"sv,     "swing"sv,   "nest"sv};
constexpr std::array kPlaces = {"park"sv,    "forest"sv, "garden"sv,  "river"sv,  "house"sv,
                                "beach"sv,   "school"sv, "farm"sv,    "lake"sv,   "hill"sv,
                                "town"sv,    "shop"sv,   "kitchen"sv, "yard"sv,   "field"sv,
                                "pond"sv,    "woods"sv,  "sea"sv,     "castle"sv, "zoo"sv,
                                "library"sv, "cave"sv,   "road"sv,    "bridge"sv, "playground"sv};
constexpr std::array kPrepositions = {"in"sv, "at"sv, "near"sv, "by"sv, "next to"sv, "behind"sv};
constexpr std::array kAdjectives = {
    "big"sv,    "little"sv, "small"sv,  "red"sv,     "blue"sv,      "happy"sv,     "green"sv,
    "old"sv,    "new"sv,    "yellow"sv, "shiny"sv,   "soft"sv,      "pretty"sv,    "funny"sv,
    "tall"sv,   "round"sv,  "warm"sv,   "cold"sv,    "wet"sv,       "dark"sv,      "bright"sv,
    "tiny"sv,   "huge"sv,   "pink"sv,   "purple"sv,  "brown"sv,     "white"sv,     "black"sv,
    "heavy"sv,  "fast"sv,   "slow"sv,   "strong"sv,  "kind"sv,      "brave"sv,     "quiet"sv,
    "loud"sv,   "clean"sv,  "dirty"sv,  "sweet"sv,   "silly"sv,     "fluffy"sv,    "gentle"sv,
    "busy"sv,   "lazy"sv,   "magic"sv,  "special"sv, "beautiful"sv, "wonderful"sv, "strange"sv,
    "orange"sv, "golden"sv, "smooth"sv, "sticky"sv,  "broken"sv};
// What a character is like (the first sentence of a story).
constexpr std::array kCharacter = {"little"sv, "kind"sv,   "happy"sv, "brave"sv,  "curious"sv,
                                   "small"sv,  "funny"sv,  "shy"sv,   "clever"sv, "friendly"sv,
                                   "young"sv,  "gentle"sv, "busy"sv};
// Why a thing could not be had ("... but it was too high").
constexpr std::array kTooWhat = {"high"sv, "big"sv,  "heavy"sv, "far"sv,  "small"sv, "hot"sv,
                                 "cold"sv, "hard"sv, "fast"sv,  "dark"sv, "deep"sv};
constexpr std::array kFeelings = {"happy"sv,  "sad"sv,     "scared"sv,    "excited"sv, "tired"sv,
                                  "hungry"sv, "proud"sv,   "surprised"sv, "angry"sv,   "sleepy"sv,
                                  "lonely"sv, "curious"sv, "worried"sv,   "calm"sv,    "glad"sv};
// Verbs whose object is a thing.
constexpr std::array kThingVerbs = {
    Verb{"see", "saw"},       Verb{"find", "found"},        Verb{"like", "liked"},
    Verb{"take", "took"},     Verb{"make", "made"},         Verb{"have", "had"},
    Verb{"love", "loved"},    Verb{"hold", "held"},         Verb{"carry", "carried"},
    Verb{"open", "opened"},   Verb{"build", "built"},       Verb{"draw", "drew"},
    Verb{"throw", "threw"},   Verb{"catch", "caught"},      Verb{"bring", "brought"},
    Verb{"hide", "hid"},      Verb{"share", "shared"},      Verb{"clean", "cleaned"},
    Verb{"fix", "fixed"},     Verb{"paint", "painted"},     Verb{"kick", "kicked"},
    Verb{"push", "pushed"},   Verb{"pull", "pulled"},       Verb{"buy", "bought"},
    Verb{"lose", "lost"},     Verb{"pick up", "picked up"}, Verb{"wash", "washed"},
    Verb{"watch", "watched"}, Verb{"touch", "touched"},     Verb{"drop", "dropped"},
    Verb{"keep", "kept"}};
// Verbs whose object is a person or an animal.
constexpr std::array kCreatureVerbs = {
    Verb{"see", "saw"},       Verb{"find", "found"},      Verb{"like", "liked"},
    Verb{"love", "loved"},    Verb{"hug", "hugged"},      Verb{"help", "helped"},
    Verb{"watch", "watched"}, Verb{"call", "called"},     Verb{"follow", "followed"},
    Verb{"meet", "met"},      Verb{"visit", "visited"},   Verb{"thank", "thanked"},
    Verb{"feed", "fed"},      Verb{"wave to", "waved to"}};
// What one friend does with the other ("Lily hugged Tom and they ...").
constexpr std::array kFriendVerbs = {"hugged"sv,  "helped"sv,  "called"sv,   "met"sv,
                                     "thanked"sv, "visited"sv, "followed"sv, "waved to"sv};
// What one wants to do with a thing out of reach ("wanted to reach the kite").
constexpr std::array kReachVerbs = {
    Verb{"reach", "reached"}, Verb{"get", "got"},       Verb{"catch", "caught"},
    Verb{"lift", "lifted"},   Verb{"carry", "carried"}, Verb{"climb", "climbed"},
    Verb{"open", "opened"},   Verb{"move", "moved"},    Verb{"hold", "held"}};
// Verbs without an object.
constexpr std::array kIntransitive = {Verb{"play", "played"},
                                      Verb{"run", "ran"},
                                      Verb{"jump", "jumped"},
                                      Verb{"laugh", "laughed"},
                                      Verb{"smile", "smiled"},
                                      Verb{"sing", "sang"},
                                      Verb{"walk", "walked"},
                                      Verb{"dance", "danced"},
                                      Verb{"swim", "swam"},
                                      Verb{"sleep", "slept"},
                                      Verb{"look around", "looked around"},
                                      Verb{"wait", "waited"},
                                      Verb{"cry", "cried"},
                                      Verb{"sit", "sat"},
                                      Verb{"climb", "climbed"},
                                      Verb{"rest", "rested"},
                                      Verb{"shout", "shouted"},
                                      Verb{"hop", "hopped"},
                                      Verb{"skip", "skipped"},
                                      Verb{"hide", "hid"},
                                      Verb{"read", "read"}};
constexpr std::array kAdverbs = {"quickly"sv,   "slowly"sv,         "happily"sv, "together"sv,
                                 "quietly"sv,   "carefully"sv,      "again"sv,   "loudly"sv,
                                 "softly"sv,    "all day"sv,        "gently"sv,  "sadly"sv,
                                 "very fast"sv, "for a long time"sv};
constexpr std::array kTimes = {"One day"sv,
                               "Then"sv,
                               "The next day"sv,
                               "Later"sv,
                               "In the morning"sv,
                               "After lunch"sv,
                               "Soon"sv,
                               "At night"sv,
                               "After a while"sv,
                               "That evening"sv,
                               "Every day"sv,
                               "On Sunday"sv,
                               "When the sun came up"sv};
// Words a retrieval document stores as values: drawn uniformly (no Zipf skew), so that an
// answer cannot be guessed from frequencies.
constexpr std::array kValues = {
    "apple"sv,  "banana"sv, "cherry"sv, "grape"sv, "lemon"sv, "mango"sv, "melon"sv,  "orange"sv,
    "peach"sv,  "pear"sv,   "plum"sv,   "berry"sv, "red"sv,   "blue"sv,  "green"sv,  "yellow"sv,
    "purple"sv, "pink"sv,   "brown"sv,  "black"sv, "white"sv, "gold"sv,  "silver"sv, "cat"sv,
    "dog"sv,    "bird"sv,   "fox"sv,    "bear"sv,  "frog"sv,  "duck"sv,  "mouse"sv,  "owl"sv,
    "horse"sv,  "lion"sv,   "tiger"sv,  "whale"sv, "shark"sv, "snake"sv, "goat"sv,   "sheep"sv,
    "ball"sv,   "book"sv,   "cake"sv,   "kite"sv,  "boat"sv,  "train"sv, "drum"sv,   "hat"sv,
    "shoe"sv,   "cup"sv,    "lamp"sv,   "chair"sv, "table"sv, "clock"sv, "bell"sv,   "ring"sv,
    "key"sv,    "map"sv,    "coin"sv,   "star"sv,  "moon"sv,  "sun"sv,   "cloud"sv,  "rain"sv,
    "snow"sv,   "wind"sv,   "river"sv,  "hill"sv,  "tree"sv,  "rock"sv,  "sand"sv,   "shell"sv,
    "stone"sv,  "glass"sv,  "paper"sv,  "bread"sv, "milk"sv,  "honey"sv, "salt"sv,   "soup"sv};

constexpr Words girls(kGirls);
constexpr Words boys(kBoys);
constexpr Words animals(kAnimals);
constexpr Words family(kFamily);
constexpr Words people(kPeople);
constexpr Words things(kThings);
constexpr Words places(kPlaces);
constexpr Words prepositions(kPrepositions);
constexpr Words adjectives(kAdjectives);
constexpr Words character(kCharacter);
constexpr Words feelings(kFeelings);
constexpr Words adverbs(kAdverbs);
constexpr Words times(kTimes);
constexpr Verbs thing_verbs(kThingVerbs);
constexpr Verbs creature_verbs(kCreatureVerbs);
constexpr Verbs reach_verbs(kReachVerbs);
constexpr Verbs intransitive(kIntransitive);

// ---- prose ----

// Pronoun forms, indexed by kind: 0 she, 1 he, 2 it, 3 they.
constexpr std::array kSubjectPronoun = {"she"sv, "he"sv, "it"sv, "they"sv};
constexpr std::array kPossessive = {"her"sv, "his"sv, "its"sv, "their"sv};
constexpr std::array kBe = {"was"sv, "was"sv, "was"sv, "were"sv};

bool starts_with_vowel(std::string_view word) {
  return !word.empty() && std::string_view("aeiou").find(word.front()) != std::string_view::npos;
}

void append_plural(std::string& out, std::string_view noun) {
  if (noun == "mouse") {
    out += "mice";
  } else if (noun == "fish" || noun == "sheep" || noun == "deer") {
    out += noun;
  } else if (noun == "man" || noun == "fisherman") {
    out += noun.substr(0, noun.size() - 2);
    out += "en";
  } else if (noun == "leaf") {
    out += "leaves";
  } else if (noun.ends_with('x') || noun.ends_with("sh") || noun.ends_with("ch") ||
             noun.ends_with('s')) {
    out += noun;
    out += "es";
  } else if (noun.ends_with('y') && !starts_with_vowel(noun.substr(noun.size() - 2, 1))) {
    out += noun.substr(0, noun.size() - 1);
    out += "ies";
  } else {
    out += noun;
    out += 's';
  }
}

void capitalize_at(std::string& s, std::size_t i) {
  if (i < s.size() && s[i] >= 'a' && s[i] <= 'z') s[i] = static_cast<char>(s[i] - 'a' + 'A');
}

// One story: a hero, a friend and a pet, and sentences about them from a dozen templates,
// grouped into paragraphs of 3 to 7 sentences.
class ProseWriter {
 public:
  explicit ProseWriter(Rng& rng) : rng_(rng) {
    hero_female_ = rng_.chance(0.5);
    hero_ = (hero_female_ ? girls : boys).pick(rng_);
    friend_female_ = rng_.chance(0.5);
    do {
      friend_ = (friend_female_ ? girls : boys).pick(rng_);
    } while (friend_ == hero_);
    pet_ = animals.pick(rng_);
  }

  // Appends the story to `out` (empty at first), sentence by sentence while they fit in
  // `target` characters; sentences are added past `target` until `min_chars` is reached.
  void write(std::string& out, std::size_t target, std::size_t min_chars) {
    int left_in_paragraph = rng_.between(3, 7);
    for (bool first = true;; first = false) {
      sentence_.clear();
      if (first) {
        intro();
      } else {
        sentence();
      }
      capitalize_at(sentence_, sentence_[0] == '"' ? 1 : 0);
      const std::string_view separator = first ? ""sv : left_in_paragraph == 0 ? "\n\n"sv : " "sv;
      if (out.size() + separator.size() + sentence_.size() > target && out.size() >= min_chars)
        return;
      if (left_in_paragraph == 0) left_in_paragraph = rng_.between(3, 7);
      out += separator;
      out += sentence_;
      --left_in_paragraph;
    }
  }

  // One sentence (never the introduction): the lines of prose in retrieval documents.
  std::string_view next_sentence() {
    sentence_.clear();
    sentence();
    capitalize_at(sentence_, sentence_[0] == '"' ? 1 : 0);
    return sentence_;
  }

 private:
  // Appends a word (or words), with a space unless it opens the sentence or a quotation.
  void put(std::string_view word) {
    if (!sentence_.empty() && !quote_open_) sentence_ += ' ';
    quote_open_ = false;
    sentence_ += word;
  }
  void open_quote() {
    if (!sentence_.empty()) sentence_ += ' ';
    sentence_ += '"';
    quote_open_ = true;
  }
  void end(char mark = '.') { sentence_ += mark; }
  // "a" or "an" for the word that follows.
  void article(std::string_view next) { put(starts_with_vowel(next) ? "an"sv : "a"sv); }
  void number(int n) {
    char digits[16];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    put(std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }
  void plural(std::string_view noun) {
    sentence_ += ' ';
    append_plural(sentence_, noun);
  }
  int hero_pronoun() const { return hero_female_ ? 0 : 1; }
  int friend_pronoun() const { return friend_female_ ? 0 : 1; }

  // A subject; returns its pronoun kind (0 she, 1 he, 2 it, 3 they).
  int subject() {
    switch (rng_.below(10)) {
      case 0:
      case 1:
      case 2:
        put(hero_);
        return hero_pronoun();
      case 3:
      case 4:
        put(kSubjectPronoun[hero_pronoun()]);
        return hero_pronoun();
      case 5:
        put(friend_);
        return friend_pronoun();
      case 6:
        put("the");
        put(pet_);
        return 2;
      case 7: {
        const std::size_t f = family.pick_index(rng_);
        put(hero_);
        sentence_ += "'s";
        put(family[f]);
        return kFamilyPronoun[f];
      }
      case 8:
        put(hero_);
        put("and");
        put(friend_);
        return 3;
      default:
        put("they");
        return 3;
    }
  }
  // "a big red ball", "the kite".
  void thing() {
    const std::string_view noun = things.pick(rng_);
    if (rng_.chance(0.4)) {
      put("the");
      if (rng_.chance(0.3)) put(adjectives.pick(rng_));
    } else if (rng_.chance(0.6)) {
      const std::string_view adjective = adjectives.pick(rng_);
      article(adjective);
      put(adjective);
    } else {
      article(noun);
    }
    put(noun);
  }
  // "her mom", "the farmer", "the dog", "a little bird".
  void creature() {
    switch (rng_.below(5)) {
      case 0:
        put(kPossessive[hero_pronoun()]);
        put(family.pick(rng_));
        return;
      case 1:
        put("the");
        put(people.pick(rng_));
        return;
      case 2:
        put("the");
        put(pet_);
        return;
      default: {
        const std::string_view animal = animals.pick(rng_);
        if (rng_.chance(0.5)) {
          const std::string_view adjective = adjectives.pick(rng_);
          article(adjective);
          put(adjective);
        } else {
          article(animal);
        }
        put(animal);
        return;
      }
    }
  }
  // A verb and its object.
  void action_past() {
    if (rng_.chance(0.65)) {
      put(thing_verbs.pick(rng_).past);
      thing();
    } else {
      put(creature_verbs.pick(rng_).past);
      creature();
    }
  }
  void place() {
    put(prepositions.pick(rng_));
    put("the");
    put(places.pick(rng_));
  }

  void intro() {
    put(rng_.chance(0.7) ? "once upon a time, there was"sv : "there once was"sv);
    const std::string_view adjective = character.pick(rng_);
    article(adjective);
    put(adjective);
    put(rng_.chance(0.8) ? (hero_female_ ? "girl"sv : "boy"sv) : animals.pick(rng_));
    put("named");
    put(hero_);
    end();
  }

  // Something `speaker` says to `listener`, without the final punctuation mark, which it
  // returns ('?' for a question).
  char utterance(std::string_view listener) {
    switch (rng_.below(9)) {
      case 0:
        put("I like the");
        put(adjectives.pick(rng_));
        put(things.pick(rng_));
        return '.';
      case 1:
        put("look at the");
        put(animals.pick(rng_));
        return '!';
      case 2:
        put("can we");
        put(intransitive.pick(rng_).base);
        place();
        return '?';
      case 3:
        put("let's go to the");
        put(places.pick(rng_));
        return '!';
      case 4:
        put("thank you,");
        put(listener);
        return '.';
      case 5:
        put("I am so");
        put(feelings.pick(rng_));
        return '.';
      case 6:
        put("where is my");
        put(things.pick(rng_));
        return '?';
      case 7:
        put("do you want to");
        put(reach_verbs.pick(rng_).base);
        put("the");
        put(things.pick(rng_));
        return '?';
      default:
        put("I have");
        number(rng_.between(2, 12));
        plural(things.pick(rng_));
        return '.';
    }
  }

  // "Look at the duck!" said Tom. / Tom asked, "Where is my ball?"
  void dialogue() {
    const bool hero_speaks = rng_.chance(0.6);
    const std::string_view speaker = hero_speaks ? hero_ : friend_;
    const std::string_view listener = hero_speaks ? friend_ : hero_;
    if (rng_.chance(0.5)) {
      open_quote();
      const char mark = utterance(listener);
      sentence_ += mark == '.' ? ',' : mark;
      sentence_ += '"';
      put(mark == '?' ? "asked"sv : "said"sv);
      put(speaker);
      end();
    } else {
      put(speaker);
      const std::size_t verb_at = sentence_.size();
      put("said,");
      open_quote();
      const std::size_t first_letter = sentence_.size();
      const char mark = utterance(listener);
      capitalize_at(sentence_, first_letter);
      if (mark == '?') sentence_.replace(verb_at + 1, 4, "asked");
      sentence_ += mark;
      sentence_ += '"';
    }
  }

  void sentence() {
    // Template weights: the common shapes first.
    static constexpr std::array<int, 14> kWeights = {10, 10, 6, 5, 4, 8, 3, 3, 3, 4, 3, 3, 2, 2};
    static constexpr int kTotal = [] {
      int t = 0;
      for (const int w : kWeights)
        t += w;
      return t;
    }();
    int r = static_cast<int>(rng_.below(kTotal));
    std::size_t kind = 0;
    while (r >= kWeights[kind])
      r -= kWeights[kind++];
    switch (kind) {
      case 0:  // One day, Lily played in the park.
        if (rng_.chance(0.6)) {
          put(times.pick(rng_));
          sentence_ += ',';
        }
        subject();
        put(intransitive.pick(rng_).past);
        place();
        end();
        return;
      case 1:  // Tom found a shiny ball.
        subject();
        action_past();
        if (rng_.chance(0.3)) place();
        end();
        return;
      case 2: {  // She was very happy.
        const int p = subject();
        put(rng_.chance(0.5) ? kBe[static_cast<std::size_t>(p)] : "felt"sv);
        if (rng_.chance(0.4)) put("very");
        put(feelings.pick(rng_));
        end();
        return;
      }
      case 3:  // Lily saw a frog and took a red cup.
        subject();
        action_past();
        put("and");
        action_past();
        end();
        return;
      case 4:  // He wanted to reach the kite, but it was too high.
        subject();
        put("wanted to");
        put(reach_verbs.pick(rng_).base);
        put("the");
        put(things.pick(rng_));
        sentence_ += ',';
        put("but it was too");
        put(kTooWhat[rng_.below(kTooWhat.size())]);
        end();
        return;
      case 5:  // "Look at the duck!" said Tom.
        dialogue();
        return;
      case 6:  // Lily had 3 apples. / There were 7 ducks in the pond.
        if (rng_.chance(0.5)) {
          subject();
          put("had");
          number(rng_.between(2, 12));
          plural(things.pick(rng_));
        } else {
          put("there were");
          number(rng_.between(2, 20));
          plural(animals.pick(rng_));
          place();
        }
        end();
        return;
      case 7:  // Tom was 5 years old.
        put(rng_.chance(0.5) ? hero_ : friend_);
        put("was");
        number(rng_.between(3, 9));
        put("years old");
        end();
        return;
      case 8:  // When Lily laughed, the dog laughed too.
        put("when");
        put(hero_);
        put(intransitive.pick(rng_).past);
        sentence_ += ',';
        if (rng_.chance(0.5)) {
          put(friend_);
        } else {
          put("the");
          put(pet_);
        }
        put(intransitive.pick(rng_).past);
        put("too");
        end();
        return;
      case 9:  // The little cat ran quickly.
        put("the");
        put(adjectives.pick(rng_));
        put(rng_.chance(0.5) ? pet_ : animals.pick(rng_));
        put(intransitive.pick(rng_).past);
        put(adverbs.pick(rng_));
        end();
        return;
      case 10: {  // She went to the lake because she wanted to swim.
        const int p = subject();
        put("went to the");
        put(places.pick(rng_));
        put("because");
        put(kSubjectPronoun[static_cast<std::size_t>(p)]);
        put("wanted to");
        put(intransitive.pick(rng_).base);
        end();
        return;
      }
      case 11:  // Her dad said that the cake was sweet.
        put(kPossessive[hero_pronoun()]);
        put(family.pick(rng_));
        put("said that the");
        put(things.pick(rng_));
        put("was");
        put(adjectives.pick(rng_));
        end();
        return;
      case 12:  // Lily gave the ball to Tom, and he smiled.
        put(hero_);
        put("gave the");
        put(things.pick(rng_));
        put("to");
        put(friend_);
        sentence_ += ',';
        put("and");
        put(kSubjectPronoun[friend_pronoun()]);
        put(intransitive.pick(rng_).past);
        end();
        return;
      default: {  // Lily hugged Tom and they played all day.
        const bool hero_first = rng_.chance(0.7);
        put(hero_first ? hero_ : friend_);
        put(kFriendVerbs[rng_.below(kFriendVerbs.size())]);
        put(hero_first ? friend_ : hero_);
        put("and they");
        put(intransitive.pick(rng_).past);
        put(adverbs.pick(rng_));
        end();
        return;
      }
    }
  }

  Rng& rng_;
  std::string_view hero_, friend_, pet_;
  bool hero_female_ = false, friend_female_ = false;
  bool quote_open_ = false;
  std::string sentence_;
};

// ---- key-value retrieval ----

// "key 4821 is apple." lines, "what is key 4821? apple" questions about a key listed earlier
// (any earlier one, so the distance back varies from one line to the whole document), and now
// and then a line of prose between them. Keys are distinct within a document.
void write_retrieval(Rng& rng, std::string& out, std::size_t target, std::size_t min_chars) {
  struct Entry {
    int key;
    std::string_view value;
  };
  std::vector<Entry> entries;
  std::vector<bool> used(10000, false);
  std::string line;
  ProseWriter filler(rng);
  for (;;) {
    line.clear();
    const double r = rng.uniform();
    // At most 9000 four-digit keys: past that (documents over ~170,000 characters) the
    // document goes on with questions only.
    if (entries.size() < 3 || (r < 0.45 && entries.size() < 9000)) {
      int key;
      do {
        key = rng.between(1000, 9999);
      } while (used[static_cast<std::size_t>(key)]);
      const std::string_view value = kValues[rng.below(kValues.size())];
      line += "key ";
      line += std::to_string(key);
      line += " is ";
      line += value;
      line += ".\n";
      if (out.size() + line.size() > target && out.size() >= min_chars) return;
      used[static_cast<std::size_t>(key)] = true;
      entries.push_back({key, value});
    } else if (r < 0.92) {
      const Entry& e = entries[rng.below(entries.size())];
      line += "what is key ";
      line += std::to_string(e.key);
      line += "? ";
      line += e.value;
      line += '\n';
      if (out.size() + line.size() > target && out.size() >= min_chars) return;
    } else {
      line += filler.next_sentence();
      line += '\n';
      if (out.size() + line.size() > target && out.size() >= min_chars) return;
    }
    out += line;
  }
}

}  // namespace

std::span<const std::string_view> builtin_retrieval_values() {
  return kValues;
}

std::vector<std::string> builtin_corpus(const BuiltinCorpusOptions& options) {
  require(options.documents >= 0, "builtin corpus: documents = {} is negative", options.documents);
  require(options.retrieval_fraction >= 0.0 && options.retrieval_fraction <= 1.0,
          "builtin corpus: retrieval_fraction = {} is outside [0, 1]", options.retrieval_fraction);
  require(options.min_chars >= 1 && options.min_chars <= options.max_chars,
          "builtin corpus: need 1 <= min_chars <= max_chars, got min_chars {} and max_chars {}",
          options.min_chars, options.max_chars);
  require(options.median_chars >= 1, "builtin corpus: median_chars = {} is not positive",
          options.median_chars);

  constexpr double kSigma = 0.8;
  const double log_median = std::log(static_cast<double>(options.median_chars));
  const auto min_chars = static_cast<std::size_t>(options.min_chars);
  const auto max_chars = static_cast<std::size_t>(options.max_chars);

  std::vector<std::string> documents;
  documents.reserve(static_cast<std::size_t>(options.documents));
  for (std::int64_t i = 0; i < options.documents; ++i) {
    // One stream per document: document i is the same whatever the count asked for.
    std::uint64_t mix = options.seed ^ (static_cast<std::uint64_t>(i) * 0xd1b54a32d192ed03ULL);
    Rng rng(core::splitmix64(mix));
    const bool retrieval = rng.uniform() < options.retrieval_fraction;
    const double length = std::exp(log_median + kSigma * rng.normal());
    const std::size_t target = static_cast<std::size_t>(std::clamp(
        std::round(length), static_cast<double>(min_chars), static_cast<double>(max_chars)));

    std::string doc;
    doc.reserve(target + 256);
    if (retrieval) {
      write_retrieval(rng, doc, target, min_chars);
    } else {
      ProseWriter(rng).write(doc, target, min_chars);
    }
    // Reaching min_chars may have taken one unit past max_chars (only when the two are close).
    if (doc.size() > max_chars) doc.resize(max_chars);
    documents.push_back(std::move(doc));
  }
  return documents;
}

}  // namespace anchorctx::data
