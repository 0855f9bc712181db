// libFuzzer target for SmtpSession. The first input byte picks the client
// address, the spool outcome and the chunking; the rest is what the client
// sends. The session must never crash, must answer identically however the
// bytes are cut, and every reply must be well formed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/relay_policy.h"
#include "engine/smtp_session.h"

namespace {

using postern::engine::AcceptedMessage;
using postern::engine::RelayPolicy;
using postern::engine::SessionContext;
using postern::engine::SessionLimits;
using postern::engine::SmtpSession;
using Event = SmtpSession::Event;

constexpr std::string_view kQueueId = "FUZZ0001";

// Not assert(): fuzz builds may define NDEBUG.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Small limits so short inputs reach every limit.
SessionLimits FuzzLimits() {
  SessionLimits limits;
  limits.max_message_size = 1024;
  limits.max_recipients = 3;
  limits.max_command_line = 128;
  limits.max_text_line = 100;
  limits.max_errors = 8;
  return limits;
}

const RelayPolicy& Policy() {
  static const RelayPolicy* policy =
      new RelayPolicy(*RelayPolicy::Create({"example.com", ".example.net"}, {"192.0.2.0/24"}));
  return *policy;
}

// Every reply line: "NNN" + ' ' or '-' + text + CRLF; continuation lines share
// the code; 4xx/5xx carry an enhanced status code of the same class.
void CheckReplies(std::string_view out) {
  Check(out.empty() || out.size() >= 2, "output has whole lines");
  std::string_view pending_code;
  while (!out.empty()) {
    const size_t end = out.find("\r\n");
    Check(end != std::string_view::npos, "every reply line ends in CRLF");
    const std::string_view line = out.substr(0, end);
    out.remove_prefix(end + 2);
    Check(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos,
          "no bare CR or LF in a reply");
    Check(line.size() >= 4 && IsDigit(line[0]) && IsDigit(line[1]) && IsDigit(line[2]),
          "reply starts with three digits");
    Check(line[0] >= '2' && line[0] <= '5', "reply code class 2..5");
    Check(line[3] == ' ' || line[3] == '-', "separator after the code");
    const std::string_view code = line.substr(0, 3);
    Check(pending_code.empty() || pending_code == code, "continuation lines share the code");
    pending_code = line[3] == '-' ? code : std::string_view();
    if (line[0] == '4' || line[0] == '5') {
      Check(line.size() >= 10 && line[4] == line[0] && line[5] == '.' && IsDigit(line[6]) &&
                line.find(' ', 6) != std::string_view::npos,
            "error replies carry an enhanced status code of the same class");
    }
  }
  Check(pending_code.empty(), "a multi-line reply is finished");
}

void CheckMessage(const AcceptedMessage& m, const SessionLimits& limits) {
  Check(!m.recipients.empty(), "a message has recipients");
  Check(m.recipients.size() <= limits.max_recipients, "recipient limit holds");
  Check(m.body.rfind("Received: from ", 0) == 0, "body starts with the Received header");
  // The HELO name is printable ASCII, so the first " +0000\r\n" ends the header.
  const size_t header_end = m.body.find(" +0000\r\n");
  Check(header_end != std::string::npos, "Received header has a date");
  const std::string_view content = std::string_view(m.body).substr(header_end + 8);
  Check(content.size() <= limits.max_message_size, "size limit holds");
  // No bare CR or LF can reach the spool: that is the smuggling guard.
  size_t line_start = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] == '\r') {
      Check(i + 1 < content.size() && content[i + 1] == '\n', "CR only before LF");
    } else if (content[i] == '\n') {
      Check(i > 0 && content[i - 1] == '\r', "LF only after CR");
      Check(i - 1 - line_start <= limits.max_text_line - 2, "text line limit holds");
      line_start = i + 1;
    }
  }
  Check(content.empty() || content.size() >= 2, "content ends in CRLF");
  Check(content.empty() || content.substr(content.size() - 2) == "\r\n", "content ends in CRLF");
}

struct RunResult {
  std::string out;
  std::vector<std::string> bodies;
  bool closed = false;
};

RunResult Run(std::string_view input, const std::vector<size_t>& chunk_sizes, bool trusted,
              bool spool_fails) {
  SessionContext context;
  context.hostname = "fuzz.test";
  context.listener = "mx";
  context.client_ip = trusted ? "192.0.2.1" : "::ffff:203.0.113.9";
  context.relay = &Policy();
  context.limits = FuzzLimits();
  SmtpSession session(context);
  RunResult result;
  session.Start(&result.out);
  size_t pos = 0;
  size_t next_chunk = 0;
  while (pos < input.size() && !result.closed) {
    const size_t n =
        chunk_sizes.empty() ? input.size() : chunk_sizes[next_chunk++ % chunk_sizes.size()];
    session.Receive(input.substr(pos, n));
    pos += n;
    for (;;) {
      const Event event = session.Process(&result.out);
      if (event == Event::kNeedInput) {
        Check(session.buffered_bytes() < context.limits.max_command_line,
              "at most one partial command line stays buffered");
        break;
      }
      if (event == Event::kClose) {
        result.closed = true;
        break;
      }
      Check(event == Event::kSpool, "kWaitSpool only while a spool is outstanding");
      AcceptedMessage message = session.TakeMessage(kQueueId, absl::FromUnixSeconds(1795423258));
      CheckMessage(message, context.limits);
      result.bodies.push_back(std::move(message.body));
      std::string held;
      Check(session.Process(&held) == Event::kWaitSpool && held.empty(),
            "nothing is processed while spooling");
      session.SpoolDone(spool_fails ? absl::UnavailableError("fuzz") : absl::OkStatus(), kQueueId,
                        &result.out);
    }
  }
  if (result.closed) {
    // Closed is final: more input produces nothing.
    std::string after;
    session.Receive("NOOP\r\n");
    Check(session.Process(&after) == Event::kClose && after.empty(), "closed stays closed");
  } else {
    session.Timeout(&result.out);
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool trusted = seed & 1;
  const bool spool_fails = seed & 2;

  // Chunk sizes from a small LCG seeded by the first byte: mostly tiny cuts,
  // which is where incremental parsers break.
  std::vector<size_t> chunks;
  uint32_t state = seed * 2654435761u + 1;
  for (int i = 0; i < 32; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 16;
    chunks.push_back(r % 4 == 0 ? 1 + r % 300 : 1 + r % 7);
  }

  const RunResult whole = Run(input, {}, trusted, spool_fails);
  CheckReplies(whole.out);
  const RunResult chunked = Run(input, chunks, trusted, spool_fails);
  Check(chunked.out == whole.out, "replies do not depend on how input is cut");
  Check(chunked.bodies == whole.bodies, "messages do not depend on how input is cut");
  Check(chunked.closed == whole.closed, "closing does not depend on how input is cut");
  return 0;
}
