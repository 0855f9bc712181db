// Values quoted for a message a person reads (config errors on the admin's
// terminal): C-escaped so that a hostile or binary value cannot put control
// characters there, and cut short so one value cannot flood the message.
#ifndef POSTERN_COMMON_QUOTE_H_
#define POSTERN_COMMON_QUOTE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace postern {

// `s` between double quotes, escaped with absl::CHexEscape (\n, \t, \", \\,
// \xNN, ...); past 80 octets of `s` the rest is left out and "..." marks the
// cut: "abc" -> "\"abc\"".
std::string Quote(absl::string_view s);

}  // namespace postern

#endif  // POSTERN_COMMON_QUOTE_H_
