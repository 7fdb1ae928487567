// vt, cwe and fwe: the same seed gives the same prompt, the prompt fills the length to within one
// haystack unit, the answers are right by construction (checked by parsing the prompt: following
// the assignments, counting the words), and string_match_all on hand-made answers. Byte tokenizer,
// and stories260K's llama2.c tokenizer when ../shared/data has it.
#include "anchorctx/eval/synthetic_tasks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "support/shared_data.h"

namespace anchorctx::eval {
namespace {

std::string context_of(const TaskSample& s) {
  return s.prompt.substr(s.context_begin, s.context_end - s.context_begin);
}

std::vector<std::string> split_spaces(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;)
    out.push_back(w);
  return out;
}

// Words by count, most frequent first (ties by word, so the order is total).
std::vector<std::pair<std::string, int>> by_count(const std::map<std::string, int>& counts) {
  std::vector<std::pair<std::string, int>> v(counts.begin(), counts.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return v;
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

void check_length(const TaskSample& s, std::int64_t length, std::int64_t slack) {
  const std::int64_t used = static_cast<std::int64_t>(s.prompt_ids.size()) + s.tokens_to_generate;
  EXPECT_LE(used, length);
  EXPECT_GE(used, length - slack);
}

// vt: follow every "VAR X = ..." of the context; the answers are exactly the variables whose
// value is the one the question asks.
void check_vt(const TaskSample& s) {
  const std::string ctx = context_of(s);
  std::map<std::string, std::string> assigned;  // name -> a number or another name
  const std::vector<std::string> w = split_spaces(ctx);
  for (std::size_t i = 0; i + 3 < w.size(); ++i)
    if (w[i] == "VAR" && w[i + 2] == "=")
      assigned[w[i + 1]] = w[i + 3] == "VAR" && i + 4 < w.size() ? w[i + 4] : w[i + 3];
  ASSERT_EQ(assigned.size(), 5u) << ctx.substr(0, 300);
  const auto resolve = [&](std::string name) {
    for (int hops = 0; hops < 10 && assigned.count(name); ++hops)
      name = assigned[name];
    return name;
  };
  // The value asked: the number after "assigned the value " in the question.
  const std::string question = s.prompt.substr(s.context_end);
  const std::size_t at = question.find("the value ");
  ASSERT_NE(at, std::string::npos) << question;
  const std::string value = question.substr(at + 10, 5);
  std::set<std::string> holding;
  for (const auto& [name, rhs] : assigned)
    if (resolve(name) == value) holding.insert(name);
  EXPECT_EQ(holding, as_set(s.answers));
  // The chain reads in order: the value first.
  EXPECT_NE(ctx.find("VAR " + s.answers[0] + " = " + value), std::string::npos);
  // The one-shot example before the question has its own, 3-letter variables and its answer.
  const std::string example = s.prompt.substr(0, s.context_begin);
  EXPECT_NE(example.find("they are: "), std::string::npos);
  for (const std::string& a : s.answers)
    EXPECT_EQ(example.find(a), std::string::npos) << a;
}

// cwe: the list is numbered 1..n in order; the answers are the 10 most frequent words, and the
// 10th is strictly more frequent than the 11th.
void check_cwe(const TaskSample& s, int common_repeats, int rare_repeats) {
  const std::vector<std::string> w = split_spaces(context_of(s));
  ASSERT_EQ(w.size() % 2, 0u);
  std::map<std::string, int> counts;
  for (std::size_t i = 0; i < w.size(); i += 2) {
    ASSERT_EQ(w[i], std::to_string(i / 2 + 1) + ".");
    ++counts[w[i + 1]];
  }
  const auto ranked = by_count(counts);
  ASSERT_GT(ranked.size(), 10u);
  std::set<std::string> top;
  for (std::size_t i = 0; i < 10; ++i) {
    top.insert(ranked[i].first);
    EXPECT_EQ(ranked[i].second, common_repeats);
  }
  EXPECT_EQ(ranked[10].second, rare_repeats);
  EXPECT_EQ(top, as_set(s.answers));
}

// fwe: "..." is the most frequent word; the answers are the next three, each strictly more
// frequent than the fifth.
void check_fwe(const TaskSample& s) {
  std::map<std::string, int> counts;
  for (const std::string& w : split_spaces(context_of(s)))
    ++counts[w];
  const auto ranked = by_count(counts);
  ASSERT_GE(ranked.size(), 5u);
  EXPECT_EQ(ranked[0].first, "...");
  EXPECT_EQ(as_set({ranked[1].first, ranked[2].first, ranked[3].first}), as_set(s.answers));
  EXPECT_GT(ranked[3].second, ranked[4].second);
  for (const std::string& a : s.answers)
    EXPECT_EQ(a.size(), 6u) << a;
}

// FNV-1a, 64 bits: a fingerprint of a whole prompt.
std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text)
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

// The prompts of a seed, pinned (computed once): the same on every build, whatever order a
// compiler evaluates an expression's parts in (every draw is a statement of its own).
TEST(SyntheticTasks, PromptsOfASeedArePinned) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  struct Pinned {
    const char* task;
    std::int64_t length;
    std::uint64_t seed;
    std::vector<std::string> answers;
    std::size_t prompt_tokens;
    std::uint64_t fingerprint;
  };
  const Pinned pinned[] = {
      {"vt", 2500, 3, {"QRDMU", "JDOGQ", "RWXSG", "XOUSJ", "CKQCY"}, 2454, 0x2e4a109568892df3ull},
      {"cwe",
       2000,
       11,
       {"grandpa", "liked", "too", "trains", "they", "hard", "said", "foxes", "hid", "eggs"},
       1877,
       0xeff93d1c949f7e21ull},
      {"fwe", 1500, 5, {"gfeikt", "tnrtjx", "mxtrwo"}, 1447, 0xa59f3c5ba9ce1733ull},
  };
  for (const Pinned& p : pinned) {
    SCOPED_TRACE(p.task);
    const TaskSample s = gen.make(p.task, p.length, p.seed);
    EXPECT_EQ(s.answers, p.answers);
    EXPECT_EQ(s.prompt_ids.size(), p.prompt_tokens);
    EXPECT_EQ(fnv1a(s.prompt), p.fingerprint);
  }
}

TEST(SyntheticTasks, VariableTrackingByteTokenizer) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  for (const std::int64_t length : {2500, 6000}) {
    SCOPED_TRACE(length);
    const TaskSample s = gen.make("vt", length, 3);
    EXPECT_EQ(s.tokens_to_generate, 30);
    check_length(s, length, 100);  // one noise line (91 bytes) and its joining space
    check_vt(s);
    EXPECT_EQ(gen.make("vt", length, 3).prompt, s.prompt);
    EXPECT_NE(gen.make("vt", length, 4).prompt, s.prompt);
    EXPECT_TRUE(std::isnan(s.depth));
  }
}

TEST(SyntheticTasks, CommonWordsByteTokenizer) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  ASSERT_GT(gen.words().size(), 50u);
  // Below 4096 tokens RULER's repeats are 6/1, from 4096 on 30/3.
  for (const auto& [length, common, rare] :
       std::vector<std::tuple<std::int64_t, int, int>>{{2000, 6, 1}, {9000, 30, 3}}) {
    SCOPED_TRACE(length);
    const TaskSample s = gen.make("cwe", length, 11);
    EXPECT_EQ(s.tokens_to_generate, 120);
    check_length(s, length, 3 * 20);  // one more word: its repeats, "NNNN. word " each
    check_cwe(s, common, rare);
    EXPECT_EQ(gen.make("cwe", length, 11).prompt, s.prompt);
    EXPECT_NE(gen.make("cwe", length, 12).prompt, s.prompt);
  }
}

TEST(SyntheticTasks, CommonWordsMakesUpWordsWhenTheTextRunsOut) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, "The cat sat on the mat, said the dog.",
                               default_templates().at("ruler"));
  EXPECT_EQ(gen.words(), (std::vector<std::string>{"cat", "dog", "mat", "said", "sat", "the"}));
  const TaskSample s = gen.make("cwe", 3000, 1);
  check_length(s, 3000, 40);
  check_cwe(s, 6, 1);
}

TEST(SyntheticTasks, FrequentWordsByteTokenizer) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  for (const std::int64_t length : {1024, 4000, 16000}) {
    SCOPED_TRACE(length);
    const TaskSample s = gen.make("fwe", length, 5);
    EXPECT_EQ(s.tokens_to_generate, 50);
    check_length(s, length, 40);  // one more word drawn adds at most a few 7-byte words
    check_fwe(s);
    EXPECT_EQ(gen.make("fwe", length, 5).prompt, s.prompt);
    EXPECT_NE(gen.make("fwe", length, 6).prompt, s.prompt);
  }
}

TEST(SyntheticTasks, Stories260kTokenizerLengths) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer_file, "stories260k/tok512.bin");
  const auto tok = data::load_tokenizer(tokenizer_file);
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  const TaskSample vt = gen.make("vt", 3000, 1);
  check_length(vt, 3000, 60);
  check_vt(vt);
  const TaskSample cwe = gen.make("cwe", 6000, 1);
  check_length(cwe, 6000, 40);
  check_cwe(cwe, 30, 3);
  const TaskSample fwe = gen.make("fwe", 3000, 1);
  check_length(fwe, 3000, 30);
  check_fwe(fwe);
}

TEST(SyntheticTasks, ScoresHandMadeAnswers) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator gen(*tok, builtin_prose(100), default_templates().at("ruler"));
  const TaskSample vt = gen.make("vt", 3000, 2);
  ASSERT_EQ(vt.answers.size(), 5u);
  EXPECT_DOUBLE_EQ(string_match_all(vt.answers[0] + " " + vt.answers[1] + " " + vt.answers[2] +
                                        " " + vt.answers[3] + " " + vt.answers[4],
                                    vt.answers),
                   1.0);
  // Case-insensitive, and a partial answer scores its share.
  std::string two = vt.answers[3] + ", " + vt.answers[1];
  std::transform(two.begin(), two.end(), two.begin(),
                 [](char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_DOUBLE_EQ(string_match_all(two, vt.answers), 0.4);
  const TaskSample cwe = gen.make("cwe", 2000, 2);
  std::string seven;
  for (int i = 0; i < 7; ++i)
    seven += std::to_string(i + 1) + ". " + cwe.answers[static_cast<std::size_t>(i)] + " ";
  EXPECT_DOUBLE_EQ(string_match_all(seven, cwe.answers), 0.7);
  const TaskSample fwe = gen.make("fwe", 2000, 2);
  EXPECT_DOUBLE_EQ(string_match_all(" " + fwe.answers[2] + ", " + fwe.answers[0], fwe.answers),
                   2.0 / 3.0);
  EXPECT_DOUBLE_EQ(string_match_all("...", fwe.answers), 0.0);
}

TEST(SyntheticTasks, Refusals) {
  const auto tok = data::make_byte_tokenizer();
  const SyntheticGenerator ruler(*tok, builtin_prose(50), default_templates().at("ruler"));
  EXPECT_THROW(ruler.make("vt", 600, 1), Error);   // the one-shot example alone is longer
  EXPECT_THROW(ruler.make("cwe", 300, 1), Error);  // 11 words, 6 times and once, do not fit
  EXPECT_THROW(ruler.make("fwe", 200, 1), Error);
  EXPECT_THROW(ruler.make("qa_1", 4000, 1), Error);
  // The kv set has no vt/cwe/fwe templates: the error names the task.
  const SyntheticGenerator kv(*tok, builtin_prose(50), default_templates().at("kv"));
  try {
    kv.make("cwe", 4000, 1);
    FAIL() << "made cwe without a cwe template";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'cwe'"), std::string::npos) << e.what();
  }
  // A vt template without {query} is refused when the file is read.
  std::string bad = default_templates_json();
  bad.erase(bad.find("assigned the value {query} in the text") + 19, 8);
  EXPECT_THROW(parse_templates(bad, "t.json"), Error);
}

}  // namespace
}  // namespace anchorctx::eval
