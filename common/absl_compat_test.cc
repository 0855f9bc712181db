#include "common/absl_compat.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace postern {
namespace {

TEST(AbslCompat, ViewsTheSameBytesBothWays) {
  const std::string s("with\0nul", 8);
  const std::string_view std_view = s;
  const absl::string_view absl_view = Absl(std_view);
  EXPECT_EQ(absl_view.data(), s.data());
  EXPECT_EQ(absl_view.size(), s.size());
  const std::string_view back = Std(absl_view);
  EXPECT_EQ(back.data(), s.data());
  EXPECT_EQ(back.size(), s.size());
}

TEST(AbslCompat, EmptyViews) {
  EXPECT_TRUE(Absl(std::string_view()).empty());
  EXPECT_TRUE(Std(absl::string_view()).empty());
}

}  // namespace
}  // namespace postern
