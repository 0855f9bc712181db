// libFuzzer target for ParseSmtpCommand: never crashes, and what it accepts
// or rejects has the shape the session relies on.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/smtp/smtp_command.h"

namespace {

using postern::engine::ParseSmtpCommand;
using postern::engine::SmtpCommand;
using Verb = SmtpCommand::Verb;

// Not assert(): fuzz builds may define NDEBUG.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool HasControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<SmtpCommand> cmd = ParseSmtpCommand(line);
  if (!cmd.ok()) {
    const std::string reply(cmd.status().message());
    // The session sends this text as the reply line.
    Check(reply.rfind("500 5.5.2 ", 0) == 0 || reply.rfind("501 5.5.4 ", 0) == 0,
          "error reply has a 500/501 code and enhanced status");
    Check(!HasControl(reply), "error reply is one printable line");
    return 0;
  }
  Check(cmd->verb != Verb::kUnknown, "success means a known verb");
  Check(!HasControl(cmd->argument) || cmd->verb == Verb::kNoop || cmd->verb == Verb::kQuit ||
            cmd->verb == Verb::kHelp || cmd->verb == Verb::kExpn || cmd->verb == Verb::kVrfy ||
            cmd->verb == Verb::kAuth || cmd->verb == Verb::kBdat,
        "EHLO/HELO/MAIL/RCPT arguments carry no control characters");
  if (cmd->verb != Verb::kMail && cmd->verb != Verb::kRcpt) {
    Check(cmd->path.empty() && cmd->parameters.empty(), "only MAIL/RCPT have a path");
    return 0;
  }
  Check(cmd->path.size() <= 254, "path within RFC 5321 limits");
  Check(!HasControl(cmd->path), "path has no control characters");
  Check(cmd->verb == Verb::kMail || !cmd->path.empty(), "only MAIL may have the null path");
  // Round trip: the parsed form, written back canonically, parses the same.
  std::string again = cmd->verb == Verb::kMail ? "MAIL FROM:<" : "RCPT TO:<";
  again += cmd->path;
  again += ">";
  for (const auto& [key, value] : cmd->parameters) {
    Check(!key.empty() && !HasControl(key) && !HasControl(value), "parameter shape");
    again += " " + key;
    if (!value.empty()) again += "=" + value;
  }
  const absl::StatusOr<SmtpCommand> reparsed = ParseSmtpCommand(again);
  Check(reparsed.ok(), "canonical form parses");
  Check(reparsed->path == cmd->path, "canonical form keeps the path");
  Check(reparsed->parameters == cmd->parameters, "canonical form keeps the parameters");
  return 0;
}
