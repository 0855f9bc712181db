#include "bench/tool_main.h"

#include <sys/resource.h>

#include <cstdio>
#include <string>

namespace postern::bench {

int FlagError(const char* program, const absl::Status& status, const char* usage) {
  if (!status.message().empty()) {
    std::fprintf(stderr, "%s: %s\n", program, std::string(status.message()).c_str());
  }
  std::fputs(usage, stderr);
  return 2;
}

int ToolError(const char* program, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", program, status.ToString().c_str());
  return 1;
}

void RaiseOpenFileLimit() {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
}

}  // namespace postern::bench
