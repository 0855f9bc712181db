#include "bench/flag_parser.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace postern::bench {
namespace {

// argv as main() gets it; the strings live as long as the fixture.
class Args {
 public:
  explicit Args(std::vector<std::string> args) : args_(std::move(args)) {
    argv_.push_back(const_cast<char*>("tool"));
    for (std::string& a : args_) argv_.push_back(a.data());
  }
  int argc() const { return static_cast<int>(argv_.size()); }
  char** argv() { return argv_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> argv_;
};

TEST(FlagParserTest, ValueAfterSpaceOrEquals) {
  Args args({"--listen", "a:1", "--listen=b:2", "--key=x=y"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  EXPECT_EQ(p.name(), "listen");
  ASSERT_TRUE(p.TakeValue().ok());
  EXPECT_EQ(p.value(), "a:1");
  ASSERT_TRUE(p.Next());
  EXPECT_EQ(p.name(), "listen");
  ASSERT_TRUE(p.TakeValue().ok());
  EXPECT_EQ(p.value(), "b:2");
  ASSERT_TRUE(p.Next());
  EXPECT_EQ(p.name(), "key");
  ASSERT_TRUE(p.TakeValue().ok());
  EXPECT_EQ(p.value(), "x=y");  // only the first '=' splits
  EXPECT_FALSE(p.Next());
  EXPECT_TRUE(p.status().ok());
}

TEST(FlagParserTest, EmptyInlineValueIsAValue) {
  Args args({"--helo=", "--next"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  ASSERT_TRUE(p.TakeValue().ok());
  EXPECT_EQ(p.value(), "");
  ASSERT_TRUE(p.Next());  // --next was not taken as the value
  EXPECT_EQ(p.name(), "next");
}

TEST(FlagParserTest, SwitchRefusesInlineValue) {
  Args args({"--json", "--quiet=1"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  EXPECT_TRUE(p.NoValue().ok());
  ASSERT_TRUE(p.Next());
  EXPECT_EQ(p.NoValue().message(), "--quiet takes no value");
}

TEST(FlagParserTest, MissingValue) {
  Args args({"--target"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  absl::Status st = p.TakeValue();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "--target needs a value");
}

TEST(FlagParserTest, ValueIsTakenBeforeTheNameIsKnown) {
  // "--bogus x": x is consumed, then the tool calls the flag unknown.
  Args args({"--bogus", "x", "--listen", "y"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  ASSERT_TRUE(p.TakeValue().ok());
  EXPECT_EQ(p.Unknown().message(), "unknown flag --bogus");
  ASSERT_TRUE(p.Next());
  EXPECT_EQ(p.name(), "listen");
}

TEST(FlagParserTest, NonFlagArgumentStops) {
  Args args({"--json", "stray", "--quiet"});
  FlagParser p(args.argc(), args.argv());
  ASSERT_TRUE(p.Next());
  EXPECT_FALSE(p.Next());
  EXPECT_EQ(p.status().message(), "unexpected argument stray");
  EXPECT_FALSE(p.Next());  // stays stopped
}

TEST(FlagParserTest, SingleDashIsNotAFlag) {
  Args args({"-x"});
  FlagParser p(args.argc(), args.argv());
  EXPECT_FALSE(p.Next());
  EXPECT_EQ(p.status().message(), "unexpected argument -x");
}

TEST(FlagParserTest, HelpStopsWithAnEmptyMessage) {
  for (const char* help : {"--help", "--help=1"}) {
    Args args({"--json", help, "--bogus"});
    FlagParser p(args.argc(), args.argv());
    ASSERT_TRUE(p.Next());
    EXPECT_FALSE(p.Next()) << help;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(p.status().message(), "");
  }
}

TEST(FlagParserTest, Choices) {
  enum class Mode { kPlain, kStartTls, kImplicit };
  Args args({"--mode=starttls", "--mode=tls", "--resume", "maybe", "--tls-min", "1.3"});
  FlagParser p(args.argc(), args.argv());
  auto mode = [&] {
    return p.Choice<Mode>(
        {{"plain", Mode::kPlain}, {"starttls", Mode::kStartTls}, {"implicit", Mode::kImplicit}});
  };
  ASSERT_TRUE(p.Next() && p.TakeValue().ok());
  ASSERT_TRUE(mode().ok());
  EXPECT_EQ(*mode(), Mode::kStartTls);
  ASSERT_TRUE(p.Next() && p.TakeValue().ok());
  EXPECT_EQ(mode().status().message(), "--mode is plain, starttls or implicit");

  ASSERT_TRUE(p.Next() && p.TakeValue().ok());
  absl::StatusOr<bool> on = p.Choice<bool>({{"on", true}, {"off", false}});
  EXPECT_EQ(on.status().message(), "--resume is on or off");

  ASSERT_TRUE(p.Next() && p.TakeValue().ok());
  EXPECT_TRUE(p.CheckChoice({"1.2", "1.3"}).ok());
  EXPECT_EQ(p.CheckChoice({"1.2"}).message(), "--tls-min is 1.2");
}

}  // namespace
}  // namespace postern::bench
