// Debian's absl is built with its own absl::string_view (not
// std::string_view: ABSL_OPTION_USE_STD_STRING_VIEW is 0), so views cross
// between the standard library and absl explicitly, through these two.
#ifndef POSTERN_COMMON_ABSL_COMPAT_H_
#define POSTERN_COMMON_ABSL_COMPAT_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace postern {

// The same bytes, as absl's view.
inline absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The same bytes, as the standard library's view.
inline std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace postern

#endif  // POSTERN_COMMON_ABSL_COMPAT_H_
