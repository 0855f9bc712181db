// RunTool: the main() of a bench tool (postern-sink, postern-loadgen), which
// both run the same way: parse flags, build one loop object, Init(), Run(),
// Report(). The exit statuses are part of their interface (tests and
// bench/run_scenarios.py read them): 2 for a flag error, printed with the
// usage; 1 when Init() or Run() fails, printed as one line; otherwise what
// Report() returns.
//
// Tool must have a constructor from its Flags, absl::Status Init(),
// absl::Status Run() and int Report(). Single-threaded: main() only.
#ifndef POSTERN_BENCH_TOOL_MAIN_H_
#define POSTERN_BENCH_TOOL_MAIN_H_

#include <csignal>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::bench {

// Prints "PROGRAM: message" (none for --help's empty message) and the usage
// on stderr; returns 2.
int FlagError(const char* program, const absl::Status& status, const char* usage);
// Prints "PROGRAM: status" on stderr; returns 1.
int ToolError(const char* program, const absl::Status& status);

// Raises the soft limit on open descriptors to the hard one: thousands of
// connections need thousands of descriptors. Best effort.
void RaiseOpenFileLimit();

template <typename Tool, typename Flags>
int RunTool(const char* program, const char* usage, absl::StatusOr<Flags> flags) {
  if (!flags.ok()) return FlagError(program, flags.status(), usage);
  // A peer that closes must not end the run; its send fails with EPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  Tool tool(std::move(*flags));
  absl::Status st = tool.Init();
  if (!st.ok()) return ToolError(program, st);
  st = tool.Run();
  if (!st.ok()) return ToolError(program, st);
  return tool.Report();
}

}  // namespace postern::bench

#endif  // POSTERN_BENCH_TOOL_MAIN_H_
