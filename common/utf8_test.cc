#include "common/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace postern {
namespace {

// Encodes one code point as UTF-8, surrogates included (for the negative
// cases).
std::string Encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

TEST(Utf8, EveryScalarValueIsValidAndEverySurrogateIsNot) {
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const std::string s = Encode(cp);
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    ASSERT_EQ(IsValidUtf8(s), !surrogate) << std::hex << cp;
    ASSERT_EQ(Utf8SequenceLength(s, 0), surrogate ? 0 : s.size()) << std::hex << cp;
  }
}

TEST(Utf8, ValidText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii\r\n"));
  EXPECT_TRUE(IsValidUtf8("d\xC3\xA9j\xC3\xA0 vu"));                  // déjà vu
  EXPECT_TRUE(IsValidUtf8("\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B"));  // 用户@例
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x93\xA7"));                       // U+1F4E7
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));
}

TEST(Utf8, RejectsOverlongForms) {
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));          // U+0000 in two octets
  EXPECT_FALSE(IsValidUtf8("\xC1\xBF"));          // U+007F in two octets
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\x80"));      // U+0000 in three
  EXPECT_FALSE(IsValidUtf8("\xE0\x9F\xBF"));      // U+07FF in three
  EXPECT_FALSE(IsValidUtf8("\xF0\x80\x80\x80"));  // U+0000 in four
  EXPECT_FALSE(IsValidUtf8("\xF0\x8F\xBF\xBF"));  // U+FFFF in four
}

TEST(Utf8, RejectsSurrogatesAndValuesPastTheLastCodePoint) {
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // U+D800
  EXPECT_FALSE(IsValidUtf8("\xED\xBF\xBF"));      // U+DFFF
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF"));       // U+D7FF
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));   // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(Utf8, RejectsStrayAndMissingContinuationOctets) {
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("a\xBF"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));             // cut short at the end
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));         // cut short at the end
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x93"));     // cut short at the end
  EXPECT_FALSE(IsValidUtf8("\xC3(x"));           // ASCII where a continuation belongs
  EXPECT_FALSE(IsValidUtf8("\xE2\x82\x28zzz"));  // the third octet
}

TEST(Utf8, SequenceLengthAtAnyPosition) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x93\xA7\x80";
  EXPECT_EQ(Utf8SequenceLength(s, 0), 1u);
  EXPECT_EQ(Utf8SequenceLength(s, 1), 2u);
  EXPECT_EQ(Utf8SequenceLength(s, 2), 0u);  // a continuation octet
  EXPECT_EQ(Utf8SequenceLength(s, 3), 3u);
  EXPECT_EQ(Utf8SequenceLength(s, 6), 4u);
  EXPECT_EQ(Utf8SequenceLength(s, 10), 0u);
  EXPECT_EQ(Utf8SequenceLength(s, s.size()), 0u);
  EXPECT_EQ(Utf8SequenceLength(s.substr(0, 9), 6), 0u);  // cut short
}

}  // namespace
}  // namespace postern
