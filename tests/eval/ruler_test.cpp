// The needle-in-a-haystack generator: answers in the prompt at the stated depth, prompt length
// within a few tokens of the target, same seed same prompt, no two needles with one key, and
// string_match_all on hand-written answers. Byte tokenizer, and stories260K's llama2.c
// tokenizer when ../shared/data has it.
#include "anchorctx/eval/ruler.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::eval {
namespace {

// Every key that appears in a needle of `prompt` (the ruler template's wording), counted.
// Parsed by hand: GCC 12's std::regex trips -Wmaybe-uninitialized in the sanitizer build.
std::map<std::string, int> needle_keys(const std::string& prompt) {
  const auto is_lower = [](char c) { return c >= 'a' && c <= 'z'; };
  const auto is_key = [&](char c) { return is_lower(c) || (c >= '0' && c <= '9') || c == '-'; };
  std::map<std::string, int> keys;
  const std::string head = "special magic ";
  for (std::size_t at = prompt.find(head); at != std::string::npos;
       at = prompt.find(head, at + 1)) {
    std::size_t i = at + head.size();
    const std::size_t type_start = i;
    while (i < prompt.size() && is_lower(prompt[i]))
      ++i;
    if (i == type_start || prompt.compare(i, 5, " for ") != 0) continue;
    i += 5;
    const std::size_t key_start = i;
    while (i < prompt.size() && is_key(prompt[i]))
      ++i;
    if (i == key_start || prompt.compare(i, 5, " is: ") != 0) continue;
    ++keys[prompt.substr(key_start, i - key_start)];
  }
  return keys;
}

void check_task(const data::Tokenizer& tok, const NiahGenerator& gen, const NiahTask& task,
                std::int64_t length, double depth, std::int64_t slack) {
  SCOPED_TRACE(task.name + " length " + std::to_string(length) + " depth " + std::to_string(depth));
  const TaskSample s = gen.make(task, length, depth, 42);
  const std::int64_t used = static_cast<std::int64_t>(s.prompt_ids.size()) + s.tokens_to_generate;
  EXPECT_LE(used, length);
  EXPECT_GE(used, length - slack);
  ASSERT_FALSE(s.answers.empty());
  ASSERT_EQ(s.needle_offsets.size(), static_cast<std::size_t>(task.values * task.queries));
  for (const std::string& a : s.answers)
    EXPECT_NE(s.prompt.find(a), std::string::npos) << a;
  // The first asked needle sits at the stated depth of the context (within one sentence).
  // (within one sentence, or one needle of a needle haystack: at most 150 characters).
  ASSERT_EQ(s.needle_depths.size(), s.needle_offsets.size());
  EXPECT_NEAR(s.needle_depths.front(), depth, 150.0 / static_cast<double>(s.haystack_chars));
  for (const std::size_t offset : s.needle_offsets) {
    EXPECT_GE(offset, s.context_begin);
    EXPECT_LT(offset, s.context_end);
  }
  const std::string first = s.prompt.substr(s.needle_offsets.front(), 200);
  EXPECT_NE(first.find(s.answers.front()), std::string::npos) << first;
  if (task.queries == 1 && task.values == 1) {
    EXPECT_EQ(first.find("One of the special magic"), 0u) << first;
  }
  // Same seed, same prompt; another seed, another one.
  EXPECT_EQ(gen.make(task, length, depth, 42).prompt, s.prompt);
  EXPECT_NE(gen.make(task, length, depth, 43).prompt, s.prompt);
  EXPECT_EQ(tok.decode(s.prompt_ids).find(s.prompt.substr(0, 40)) != std::string::npos, true);
}

TEST(Niah, EveryTaskAtSeveralDepthsAndLengthsByteTokenizer) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(200), default_templates().at("ruler"));
  for (const NiahTask& task : niah_tasks())
    for (const std::int64_t length : {1024, 3000})
      for (const double depth : {0.0, 0.5, 1.0}) {
        // A piece (word) is a handful of bytes; a needle-haystack piece is a whole needle.
        const std::int64_t slack = task.haystack == NiahTask::Haystack::needles ? 120 : 20;
        check_task(*tok, gen, task, length, depth, slack);
      }
}

TEST(Niah, NeedlesNeverShareAKey) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(200), default_templates().at("ruler"));
  for (const char* name : {"niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
                           "niah_multiquery", "niah_multivalue"}) {
    const TaskSample s = gen.make(*find_niah_task(name), 4000, 0.3, 7);
    const std::map<std::string, int> keys = needle_keys(s.prompt);
    ASSERT_GE(keys.size(), name == std::string("niah_multivalue") ? 1u : 4u) << name;
    for (const auto& [key, count] : keys)
      EXPECT_EQ(count, name == std::string("niah_multivalue") ? 4 : 1) << name << " " << key;
    const std::set<std::string> distinct(s.answers.begin(), s.answers.end());
    EXPECT_EQ(distinct.size(), s.answers.size()) << name;
  }
}

// The keys of the needles in `prompt` in the order they appear.
std::vector<std::string> keys_in_order(const std::string& prompt) {
  std::vector<std::pair<std::size_t, std::string>> at;
  for (const auto& [key, count] : needle_keys(prompt))
    for (std::size_t p = prompt.find(" for " + key + " is: "); p != std::string::npos;
         p = prompt.find(" for " + key + " is: ", p + 1))
      at.emplace_back(p, key);
  std::sort(at.begin(), at.end());
  std::vector<std::string> out;
  for (const auto& [p, key] : at)
    out.push_back(key);
  return out;
}

// FNV-1a, 64 bits: a fingerprint of a whole prompt.
std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text)
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

// The prompts of a seed, pinned (computed once, by the generator as it has always drawn with
// GCC: a word key's noun before its adjective, a haystack needle's value before its key). The
// draws used to sit in one expression, whose order of evaluation C++ leaves to the compiler:
// that ruler.cpp built with clang++ 14 gave another fingerprint for all four prompts.
TEST(Niah, PromptsOfASeedArePinned) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(200), default_templates().at("ruler"));
  struct Pinned {
    const char* task;
    std::int64_t length;
    double depth;
    std::uint64_t seed;
    std::vector<std::string> first_keys;  // the first three needle keys, in prompt order
    std::vector<std::string> answers;
    std::size_t prompt_tokens;
    std::uint64_t fingerprint;
  };
  const Pinned pinned[] = {
      {"niah_multikey_1",
       1024,
       0.5,
       5,
       {"bitter-zebra", "zealous-kitten", "silent-unicorn"},
       {"1388001"},
       896,
       0x42ccea47472cfbbcull},
      {"niah_multikey_2",
       1024,
       0.5,
       5,
       {"brave-yogurt", "zesty-harbor", "tender-feather"},
       {"2442391"},
       875,
       0x365d9bd2a70056f6ull},
      {"niah_multiquery",
       2048,
       0.25,
       9,
       {"orange-unicorn", "idle-pepper", "early-cactus"},
       {"8772832", "7135886", "5923760", "7567913"},
       1918,
       0xcbff292714eb2a93ull},
      {"niah_multivalue",
       1024,
       1.0,
       0,
       {"idle-needle", "idle-needle", "idle-needle"},
       {"9841330", "5331020", "7315528", "4486215"},
       896,
       0x52e9d556f27d973cull},
  };
  for (const Pinned& p : pinned) {
    SCOPED_TRACE(p.task);
    const TaskSample s = gen.make(*find_niah_task(p.task), p.length, p.depth, p.seed);
    std::vector<std::string> keys = keys_in_order(s.prompt);
    keys.resize(std::min<std::size_t>(keys.size(), 3));
    EXPECT_EQ(keys, p.first_keys);
    EXPECT_EQ(s.answers, p.answers);
    EXPECT_EQ(s.prompt_ids.size(), p.prompt_tokens);
    EXPECT_EQ(fnv1a(s.prompt), p.fingerprint);
  }
}

// A needle haystack past the 2304 keys of the first 48 x 48 words (refused until the lists grew
// to 160 x 160): keys stay distinct, the length is met, and a prompt that needs more than the
// 25600 keys is refused with their number.
TEST(Niah, NeedleHaystackBeyondTheFirstWords) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(50), default_templates().at("ruler"));
  const NiahTask& task = *find_niah_task("niah_multikey_2");
  // About 65 bytes a needle: some 3000 needles, and the search asks for 4096.
  const TaskSample s = gen.make(task, 200000, 0.5, 3);
  const std::vector<std::string> keys = keys_in_order(s.prompt);
  EXPECT_GT(keys.size(), 2304u);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
  EXPECT_LE(static_cast<std::int64_t>(s.prompt_ids.size()) + s.tokens_to_generate, 200000);
  EXPECT_GE(static_cast<std::int64_t>(s.prompt_ids.size()) + s.tokens_to_generate, 200000 - 120);
  ASSERT_EQ(s.answers.size(), 1u);
  EXPECT_NE(s.prompt.find(s.answers[0]), std::string::npos);
  try {
    gen.make(task, 1800000, 0.5, 3);  // about 27000 needles would fit
    FAIL() << "a haystack of more than 25600 keys was made";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("25600 distinct keys"), std::string::npos) << e.what();
  }
}

TEST(Niah, KvTemplateUsesTheCorpusFormat) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(200), default_templates().at("kv"));
  const TaskSample s = gen.make(*find_niah_task("niah_single_2"), 2048, 0.25, 1);
  ASSERT_EQ(s.answers.size(), 1u);
  // The prompt ends with "\nwhat is key DDDD?" (four digits).
  const std::string question = "\nwhat is key ";
  ASSERT_GE(s.prompt.size(), question.size() + 5);
  const std::string tail = s.prompt.substr(s.prompt.size() - question.size() - 5);
  ASSERT_EQ(tail.substr(0, question.size()), question) << tail;
  ASSERT_EQ(tail.back(), '?') << tail;
  const std::string key = tail.substr(question.size(), 4);
  ASSERT_TRUE(std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
      << tail;
  EXPECT_NE(s.prompt.find("\nkey " + key + " is " + s.answers[0] + ".\n"), std::string::npos);
  EXPECT_EQ(s.tokens_to_generate, 12);
  EXPECT_THROW(gen.make(*find_niah_task("niah_multivalue"), 2048, 0.25, 1), Error);
}

TEST(Niah, RefusesWhatCannotFit) {
  const auto tok = data::make_byte_tokenizer();
  const NiahGenerator gen(*tok, builtin_prose(50), default_templates().at("ruler"));
  EXPECT_THROW(gen.make(*find_niah_task("niah_single_1"), 200, 0.5, 1), Error);
  EXPECT_THROW(gen.make(*find_niah_task("niah_single_1"), 2000, 1.5, 1), Error);
  EXPECT_EQ(find_niah_task("niah_single_9"), nullptr);
  EXPECT_THROW(NiahGenerator(*tok, "no sentence end here", default_templates().at("ruler")), Error);
}

TEST(Niah, Stories260kTokenizerLengths) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer_file, "stories260k/tok512.bin");
  const auto tok = data::load_tokenizer(tokenizer_file);
  const NiahGenerator gen(*tok, builtin_prose(200), default_templates().at("ruler"));
  for (const char* name : {"niah_single_1", "niah_single_3", "niah_multikey_2"})
    check_task(*tok, gen, *find_niah_task(name), 1500, 0.4,
               name == std::string("niah_multikey_2") ? 60 : 12);
}

TEST(Templates, RefuseMissingPlaceholders) {
  const std::string ok = default_templates_json();
  EXPECT_NO_THROW(parse_templates(ok, "t.json"));
  std::string bad = ok;
  bad.replace(bad.find("{context}"), 9, "{contxt}");
  try {
    parse_templates(bad, "t.json");
    FAIL() << "accepted a task template without {context}";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("{context}"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_templates("{\"x\": {\"task\": \"{context}{query}\"}}", "t"), Error);
  EXPECT_THROW(parse_templates("not json", "t"), Error);
  EXPECT_EQ(fill("a {x} {y} {z", {{"x", "1"}, {"y", "{x}"}}), "a 1 {x} {z");
}

// --templates files through core::read_json_file: a FIFO blocked the run for good; a NUL byte
// ended nlohmann's parse early, and deep nesting is refused before any reader walks it.
TEST(Templates, FilesAreReadAsRegularJsonFiles) {
  const test::TempDir dir;
  const std::string fifo = dir.file("fifo.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto error_of_load = [](const std::string& path) {
    try {
      load_templates(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = error_of_load(fifo);
  EXPECT_NE(e.find(fifo + ": not a regular file (a FIFO"), std::string::npos) << e;
  const std::string nul =
      dir.write("nul.json", default_templates_json() + std::string(1, '\0') + "garbage");
  e = error_of_load(nul);
  EXPECT_NE(e.find(nul + ": not valid JSON: a NUL byte"), std::string::npos) << e;
  const std::string deep =
      dir.write("deep.json", "{\"x\": " + std::string(1000, '[') + std::string(1000, ']') + "}");
  e = error_of_load(deep);
  EXPECT_NE(e.find(deep + ": JSON nested deeper than"), std::string::npos) << e;
  EXPECT_NO_THROW(load_templates(dir.write("ok.json", default_templates_json())));
}

TEST(Scoring, StringMatchAll) {
  EXPECT_DOUBLE_EQ(string_match_all(" 1234567.", {"1234567"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("The numbers are 111 and 333", {"111", "222", "333", "444"}),
                   0.5);
  EXPECT_DOUBLE_EQ(string_match_all("APPLE", {"apple"}), 1.0);
  EXPECT_DOUBLE_EQ(string_match_all("", {"apple"}), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("anything", {}), 0.0);
}

}  // namespace
}  // namespace anchorctx::eval
