// The built-in corpus: deterministic bytes (and a golden hash of the default corpus), counts,
// lengths, the mix of kinds, ASCII only, prose that reads like prose, and retrieval questions
// that the document itself answers.
#include "anchorctx/data/builtin_corpus.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"

namespace anchorctx::data {
namespace {

bool is_retrieval(const std::string& doc) {
  return doc.starts_with("key ");
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

int parse_key(std::string_view digits) {
  int key = -1;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), key);
  return ec == std::errc() && ptr == digits.data() + digits.size() ? key : -1;
}

TEST(BuiltinCorpus, SameSeedSameBytesOtherSeedOtherBytes) {
  const BuiltinCorpusOptions options;
  const std::vector<std::string> a = builtin_corpus(options);
  EXPECT_EQ(a, builtin_corpus(options));

  BuiltinCorpusOptions other = options;
  other.seed = options.seed + 1;
  const std::vector<std::string> b = builtin_corpus(other);
  ASSERT_EQ(b.size(), a.size());
  std::size_t same = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    same += a[i] == b[i];
  EXPECT_EQ(same, 0u);

  // Document i depends on the seed and i only: fewer documents are a prefix.
  BuiltinCorpusOptions few = options;
  few.documents = 10;
  const std::vector<std::string> prefix = builtin_corpus(few);
  EXPECT_EQ(prefix, std::vector<std::string>(a.begin(), a.begin() + 10));
}

// XXH3-128 of the default corpus (each document followed by a NUL byte). Any change to the
// generator changes it, and with it every dataset, demo and benchmark built on the corpus: the
// hash is updated on purpose, in the same commit, when the generator is changed on purpose.
TEST(BuiltinCorpus, GoldenHashOfTheDefaultCorpus) {
  const std::vector<std::string> docs = builtin_corpus(BuiltinCorpusOptions{});
  std::string joined;
  for (const std::string& doc : docs) {
    joined += doc;
    joined += '\0';
  }
  EXPECT_EQ(core::hash_bytes_hex(joined), "2ab954a84b2b7fea4baa5d31a5c2b6c9")
      << "the default built-in corpus changed; if on purpose, update the golden hash";
}

TEST(BuiltinCorpus, CountsAndLengths) {
  EXPECT_TRUE(builtin_corpus({.documents = 0}).empty());

  const BuiltinCorpusOptions options;
  const std::vector<std::string> docs = builtin_corpus(options);
  ASSERT_EQ(docs.size(), 2000u);
  std::vector<std::size_t> lengths;
  for (const std::string& doc : docs) {
    EXPECT_GE(doc.size(), static_cast<std::size_t>(options.min_chars));
    EXPECT_LE(doc.size(), static_cast<std::size_t>(options.max_chars));
    lengths.push_back(doc.size());
  }
  std::sort(lengths.begin(), lengths.end());
  // Lognormal(median, sigma 0.8): the median lands near median_chars (a little below: a document
  // stops before the sentence that would pass its drawn length), and the spread is wide.
  const double median = static_cast<double>(lengths[lengths.size() / 2]);
  EXPECT_GT(median, 0.9 * options.median_chars);
  EXPECT_LT(median, 1.05 * options.median_chars);
  EXPECT_LT(lengths[lengths.size() / 10], 0.5 * options.median_chars);  // exp(-1.28 * 0.8) = 0.36
  EXPECT_GT(lengths[lengths.size() * 9 / 10], 2.0 * options.median_chars);  // 2.78

  // Other bounds are kept too, and the median follows median_chars.
  const BuiltinCorpusOptions narrow{
      .seed = 5, .documents = 500, .median_chars = 400, .min_chars = 200, .max_chars = 800};
  std::vector<std::size_t> narrow_lengths;
  for (const std::string& doc : builtin_corpus(narrow)) {
    EXPECT_GE(doc.size(), 200u);
    EXPECT_LE(doc.size(), 800u);
    narrow_lengths.push_back(doc.size());
  }
  std::sort(narrow_lengths.begin(), narrow_lengths.end());
  EXPECT_GT(narrow_lengths[250], 340u);
  EXPECT_LT(narrow_lengths[250], 420u);
}

TEST(BuiltinCorpus, RetrievalFractionIsRespected) {
  const std::vector<std::string> docs = builtin_corpus(BuiltinCorpusOptions{});
  const auto retrieval = std::count_if(docs.begin(), docs.end(), is_retrieval);
  // 2000 draws with p = 0.3: mean 600, standard deviation 20.5.
  EXPECT_GT(retrieval, 520);
  EXPECT_LT(retrieval, 680);

  for (const double fraction : {0.0, 1.0}) {
    const std::vector<std::string> pure =
        builtin_corpus({.documents = 200, .retrieval_fraction = fraction});
    EXPECT_EQ(std::count_if(pure.begin(), pure.end(), is_retrieval), fraction == 0.0 ? 0 : 200);
  }
}

TEST(BuiltinCorpus, PrintableAsciiOnly) {
  for (const std::string& doc : builtin_corpus({.seed = 99, .documents = 1000})) {
    for (const char c : doc) {
      const auto u = static_cast<unsigned char>(c);
      ASSERT_TRUE(c == '\n' || (u >= 0x20 && u < 0x7f)) << "byte " << int{u} << " in\n" << doc;
    }
  }
}

// Every question's key was listed earlier in the same document with that value; keys are
// never redefined; questions reach back over short and long distances.
TEST(BuiltinCorpus, RetrievalQuestionsAreAnsweredEarlierInTheDocument) {
  std::size_t questions = 0, far = 0, near = 0;
  for (const std::string& doc : builtin_corpus({.documents = 1000, .retrieval_fraction = 1.0})) {
    ASSERT_EQ(doc.back(), '\n') << doc;
    std::map<int, std::pair<std::string_view, std::size_t>> defined;  // key -> value, line
    const std::vector<std::string_view> lines = lines_of(doc);
    for (std::size_t n = 0; n < lines.size(); ++n) {
      const std::string_view line = lines[n];
      if (line.starts_with("key ")) {
        const std::size_t is = line.find(" is ");
        ASSERT_NE(is, std::string_view::npos) << line;
        ASSERT_TRUE(line.ends_with('.')) << line;
        const int key = parse_key(line.substr(4, is - 4));
        ASSERT_GE(key, 1000) << line;
        ASSERT_LE(key, 9999) << line;
        const std::string_view value = line.substr(is + 4, line.size() - is - 5);
        ASSERT_FALSE(value.empty()) << line;
        ASSERT_TRUE(defined.emplace(key, std::make_pair(value, n)).second)
            << "key " << key << " defined twice";
      } else if (line.starts_with("what is key ")) {
        const std::size_t mark = line.find("? ");
        ASSERT_NE(mark, std::string_view::npos) << line;
        const int key = parse_key(line.substr(12, mark - 12));
        const auto it = defined.find(key);
        ASSERT_NE(it, defined.end()) << "question before its key: " << line;
        EXPECT_EQ(line.substr(mark + 2), it->second.first) << line;
        ++questions;
        const std::size_t distance = n - it->second.second;
        far += distance >= 50;
        near += distance <= 2;
      } else {
        // A line of prose between them: one sentence.
        ASSERT_FALSE(line.empty());
        EXPECT_TRUE(std::isupper(static_cast<unsigned char>(line[0])) || line[0] == '"') << line;
      }
    }
  }
  EXPECT_GT(questions, 10000u);
  EXPECT_GT(far, questions / 20);
  EXPECT_GT(near, questions / 20);
}

// Sentences, paragraphs, a vocabulary of a few hundred words with skewed frequencies.
TEST(BuiltinCorpus, ProseLooksLikeSimpleEnglish) {
  std::map<std::string, std::size_t> counts;
  std::size_t words = 0, paragraphs = 0, prose_docs = 0;
  for (const std::string& doc : builtin_corpus({.documents = 500, .retrieval_fraction = 0.0})) {
    ++prose_docs;
    EXPECT_TRUE(std::isupper(static_cast<unsigned char>(doc[0]))) << doc;
    EXPECT_NE(std::string_view(".!?\"").find(doc.back()), std::string_view::npos) << doc;
    EXPECT_EQ(doc.find("  "), std::string::npos) << doc;
    EXPECT_EQ(doc.find("\n\n\n"), std::string::npos) << doc;
    for (std::size_t at = doc.find("\n\n"); at != std::string::npos; at = doc.find("\n\n", at + 2))
      ++paragraphs;
    std::string word;
    for (const char c : doc + " ") {
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '\'') {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else if (!word.empty()) {
        ++counts[word];
        ++words;
        word.clear();
      }
    }
  }
  EXPECT_GT(paragraphs, prose_docs);  // most documents have several
  EXPECT_GE(counts.size(), 250u);
  EXPECT_LE(counts.size(), 700u);
  std::vector<std::size_t> by_rank;
  for (const auto& [w, n] : counts)
    by_rank.push_back(n);
  std::sort(by_rank.rbegin(), by_rank.rend());
  // Zipf-like: the commonest words are far more frequent than the middle of the vocabulary.
  EXPECT_GT(by_rank[0], 20 * by_rank[by_rank.size() / 2]);
  EXPECT_GT(counts["the"], words / 30);
  EXPECT_GT(counts["lily"], counts["molly"]);
}

TEST(BuiltinCorpus, RejectsBadOptions) {
  EXPECT_THROW(builtin_corpus({.documents = -1}), Error);
  EXPECT_THROW(builtin_corpus({.retrieval_fraction = 1.5}), Error);
  EXPECT_THROW(builtin_corpus({.retrieval_fraction = -0.1}), Error);
  EXPECT_THROW(builtin_corpus({.median_chars = 0}), Error);
  EXPECT_THROW(builtin_corpus({.min_chars = 0}), Error);
  EXPECT_THROW(builtin_corpus({.min_chars = 500, .max_chars = 400}), Error);
}

}  // namespace
}  // namespace anchorctx::data
