// FlagParser: the command line of the bench tools (postern-sink,
// postern-loadgen): every argument is a flag, written "--name value",
// "--name=value", or a bare "--name" for a switch.
//
// The tool's loop asks for each flag's name and decides whether it is a
// switch (NoValue()) or takes a value (TakeValue()); the parser keeps the
// position in argv and words the errors, so both tools say the same thing
// for the same mistake. A value is taken before the tool knows the name, so
// "--unknown x" consumes x and fails as an unknown flag.
//
// "--help" stops Next() with an InvalidArgument error whose message is
// empty: the tool prints its usage alone (RunTool in bench/tool_main.h).
//
// Lifetime: borrows argv, which must outlive the parser. Not thread-safe
// (main() only).
#ifndef POSTERN_BENCH_FLAG_PARSER_H_
#define POSTERN_BENCH_FLAG_PARSER_H_

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::bench {

class FlagParser {
 public:
  // argv[0], the program, is skipped.
  FlagParser(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Moves to the next flag. False at the end of argv, and on an argument
  // that is not a flag or on --help; status() says which.
  bool Next();
  // OK while flags go on and at the end of argv; else why Next() stopped.
  const absl::Status& status() const { return status_; }

  // The current flag's name, without "--" and "=value".
  const std::string& name() const { return name_; }
  // The current flag is a switch: an error if it came as --name=value.
  absl::Status NoValue() const;
  // The current flag takes a value: the text after '=', or else the next
  // argument (consumed). An error if there is neither.
  absl::Status TakeValue();
  // After TakeValue().
  const std::string& value() const { return value_; }

  // The value, which must be one of `choices`: an error "--NAME is a, b or
  // c" otherwise.
  absl::Status CheckChoice(std::initializer_list<std::string_view> choices) const;
  // The T that `choices` pairs with the value; the same error otherwise.
  template <typename T>
  absl::StatusOr<T> Choice(std::initializer_list<std::pair<std::string_view, T>> choices) const;
  // "unknown flag --NAME".
  absl::Status Unknown() const;

 private:
  // "--NAME is a, b or c".
  absl::Status ChoiceError(const std::vector<std::string_view>& choices) const;

  int argc_;
  char** argv_;
  int next_ = 1;  // the argument Next() looks at
  absl::Status status_;
  std::string name_;
  std::optional<std::string> inline_value_;
  std::string value_;
};

template <typename T>
absl::StatusOr<T> FlagParser::Choice(
    std::initializer_list<std::pair<std::string_view, T>> choices) const {
  for (const auto& [text, result] : choices) {
    if (value_ == text) return result;
  }
  std::vector<std::string_view> names;
  for (const auto& choice : choices) names.push_back(choice.first);
  return ChoiceError(names);
}

}  // namespace postern::bench

#endif  // POSTERN_BENCH_FLAG_PARSER_H_
