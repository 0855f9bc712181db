#include "bench/flag_parser.h"

#include <cstddef>

namespace postern::bench {

bool FlagParser::Next() {
  if (!status_.ok() || next_ >= argc_) return false;
  std::string_view arg = argv_[next_++];
  if (arg.substr(0, 2) != "--") {
    status_ = absl::InvalidArgumentError("unexpected argument " + std::string(arg));
    return false;
  }
  arg.remove_prefix(2);
  name_ = std::string(arg);
  inline_value_.reset();
  value_.clear();
  if (size_t eq = name_.find('='); eq != std::string::npos) {
    inline_value_ = name_.substr(eq + 1);
    name_.resize(eq);
  }
  if (name_ == "help") {
    status_ = absl::InvalidArgumentError("");
    return false;
  }
  return true;
}

absl::Status FlagParser::NoValue() const {
  if (inline_value_) return absl::InvalidArgumentError("--" + name_ + " takes no value");
  return absl::OkStatus();
}

absl::Status FlagParser::TakeValue() {
  if (inline_value_) {
    value_ = *inline_value_;
  } else if (next_ < argc_) {
    value_ = argv_[next_++];
  } else {
    return absl::InvalidArgumentError("--" + name_ + " needs a value");
  }
  return absl::OkStatus();
}

absl::Status FlagParser::CheckChoice(std::initializer_list<std::string_view> choices) const {
  for (std::string_view choice : choices) {
    if (value_ == choice) return absl::OkStatus();
  }
  return ChoiceError(choices);
}

absl::Status FlagParser::Unknown() const {
  return absl::InvalidArgumentError("unknown flag --" + name_);
}

absl::Status FlagParser::ChoiceError(const std::vector<std::string_view>& choices) const {
  std::string message = "--" + name_ + " is ";
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) message += i + 1 == choices.size() ? " or " : ", ";
    message += choices[i];
  }
  return absl::InvalidArgumentError(message);
}

}  // namespace postern::bench
