#include "anchorctx/core/utf8.h"

#include <gtest/gtest.h>

namespace anchorctx::core {
namespace {

TEST(Utf8, AcceptsEveryWellFormedLength) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii\n"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9"));          // é, 2 bytes
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC"));      // €, 3 bytes
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));  // 😀, 4 bytes
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF, the last code point
  EXPECT_EQ(utf8_sequence_length("a\xE2\x82\xAC", 1), 3u);
}

TEST(Utf8, RejectsMalformedSequences) {
  EXPECT_FALSE(is_valid_utf8("\x80"));              // a lone continuation byte
  EXPECT_FALSE(is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(is_valid_utf8("\xC3("));             // bad continuation
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));      // overlong, 3 bytes
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // a surrogate, U+D800
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xFF"));              // never a lead byte
  EXPECT_EQ(utf8_sequence_length("ok\xFF", 2), 0u);
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart (a valid but cut prefix, or one
// byte that cannot continue) becomes one U+FFFD; valid text is unchanged.
TEST(Utf8, LossyReplacesEachMaximalInvalidSubpart) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  EXPECT_EQ(utf8_lossy("plain \xC3\xA9 \xF0\x9F\x98\x80"), "plain \xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98"), "a" + r);           // a 4-byte character cut short
  EXPECT_EQ(utf8_lossy("\xC3("), r + "(");                   // bad continuation
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);          // a surrogate: three bytes, three
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xE2\x82x\x80\xFF"), r + "x" + r + r);
  EXPECT_TRUE(is_valid_utf8(utf8_lossy("\x80\xBF\xC0\xAF\xE0\x80\xAF\xF8")));
}

}  // namespace
}  // namespace anchorctx::core
