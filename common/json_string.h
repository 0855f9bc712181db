// JSON string literals for the tools' one-object-per-line output
// (postern-spool --json, postern-sink's message log).
#ifndef POSTERN_COMMON_JSON_STRING_H_
#define POSTERN_COMMON_JSON_STRING_H_

#include <string>
#include <string_view>

namespace postern {

// Appends `s` as a JSON string, quotes included: '"' and '\' are escaped,
// control characters and DEL become \u00XX, well-formed UTF-8 is kept as it
// is, and every octet that is not becomes U+FFFD, so each line stays valid
// JSON whatever a client sent.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace postern

#endif  // POSTERN_COMMON_JSON_STRING_H_
