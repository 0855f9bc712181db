#include "common/json_string.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace postern {
namespace {

std::string Json(std::string_view s) {
  std::string out = "[";
  AppendJsonString(s, &out);
  return out;
}

TEST(AppendJsonString, AppendsAQuotedString) {
  EXPECT_EQ(Json(""), "[\"\"");
  EXPECT_EQ(Json("alice@example.com"), "[\"alice@example.com\"");
}

TEST(AppendJsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Json("a\"b\\c"), "[\"a\\\"b\\\\c\"");
  EXPECT_EQ(Json("\r\n\t"), "[\"\\u000d\\u000a\\u0009\"");
  EXPECT_EQ(Json(std::string_view("\0\x1f\x7f", 3)), "[\"\\u0000\\u001f\\u007f\"");
}

TEST(AppendJsonString, KeepsWellFormedUtf8) {
  EXPECT_EQ(Json("d\xC3\xA9j\xC3\xA0"), "[\"d\xC3\xA9j\xC3\xA0\"");
  EXPECT_EQ(Json("\xF0\x9F\x93\xA7"), "[\"\xF0\x9F\x93\xA7\"");
}

TEST(AppendJsonString, ReplacesEveryOctetThatIsNotUtf8) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Json("a\xFF"
                 "b"),
            "[\"a" + fffd + "b\"");
  // An overlong form and a surrogate: one U+FFFD per octet.
  EXPECT_EQ(Json("\xC0\x80"), "[\"" + fffd + fffd + "\"");
  EXPECT_EQ(Json("\xED\xA0\x80"), "[\"" + fffd + fffd + fffd + "\"");
  // A sequence cut short by the end of the string.
  EXPECT_EQ(Json("x\xE2\x82"), "[\"x" + fffd + fffd + "\"");
}

}  // namespace
}  // namespace postern
