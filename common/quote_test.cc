#include "common/quote.h"

#include <gtest/gtest.h>

#include <string>

namespace postern {
namespace {

TEST(Quote, QuotesAndEscapes) {
  EXPECT_EQ(Quote(""), "\"\"");
  EXPECT_EQ(Quote("mx.example"), "\"mx.example\"");
  EXPECT_EQ(Quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Quote("line\r\nnext\t"), "\"line\\r\\nnext\\t\"");
  EXPECT_EQ(Quote(std::string("\0\x1b\xff", 3)), "\"\\x00\\x1b\\xff\"");
}

TEST(Quote, CutsLongValuesAtEightyOctets) {
  const std::string eighty(80, 'x');
  EXPECT_EQ(Quote(eighty), "\"" + eighty + "\"");
  EXPECT_EQ(Quote(eighty + "y"), "\"" + eighty + "...\"");
  // The cut counts octets of the value, not of its escaped form.
  std::string escaped;
  for (int i = 0; i < 80; ++i) escaped += "\\n";
  EXPECT_EQ(Quote(std::string(100, '\n')), "\"" + escaped + "...\"");
}

}  // namespace
}  // namespace postern
