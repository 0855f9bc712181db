// UTF-8 well-formedness (RFC 3629): no overlong forms, no UTF-16 surrogates
// (U+D800..U+DFFF), nothing past U+10FFFF. Used wherever octets from outside
// (SMTPUTF8 addresses and parameters, config strings bound for proto3, JSON
// output, DSN text) must be valid UTF-8.
#ifndef POSTERN_COMMON_UTF8_H_
#define POSTERN_COMMON_UTF8_H_

#include <cstddef>
#include <string_view>

namespace postern {

// Length (1-4) of the well-formed UTF-8 sequence that starts at s[i]; an
// ASCII octet is a sequence of length 1. 0 when none starts there (a stray
// continuation octet, C0, C1 or F5-FF, an overlong form, a surrogate, a code
// point past U+10FFFF, a sequence cut short) or when i >= s.size().
size_t Utf8SequenceLength(std::string_view s, size_t i);

// True when all of `s` is well-formed UTF-8 (the empty string is).
bool IsValidUtf8(std::string_view s);

}  // namespace postern

#endif  // POSTERN_COMMON_UTF8_H_
