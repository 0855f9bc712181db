#include "common/quote.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace postern {

std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 80;
  std::string out = absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMax)));
  if (s.size() > kMax) out += "...";
  out += "\"";
  return out;
}

}  // namespace postern
