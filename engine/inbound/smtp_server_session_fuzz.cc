// libFuzzer target for SmtpServerSession. The first input byte picks the client
// address, the spool outcome, the listener's TLS mode, AUTH, the verdict for
// credentials, whether the client shows a pinned certificate, and the
// chunking; the rest is what the client sends. The session must never crash,
// must answer identically however the bytes are cut (messages, DSN
// parameters and per-verb command counts included), and every reply must be
// well formed. DATA and BDAT (CHUNKING) content both reach the same message
// checks; the seed corpus has BDAT and DSN conversations to start from.
//
// TLS model: after "220 Ready to start TLS" the driver (playing the
// connection) treats the stream as TLS. The client's plaintext up to the
// next 0x16 byte (a TLS handshake record starts with it) is injected junk;
// the bytes after it are what the client sends inside TLS. No 0x16: the
// handshake fails and the connection closes. Locating the STARTTLS line end
// from the session's discard counter keeps this model independent of how
// the input is cut.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "engine/inbound/inbound_policy.h"
#include "engine/inbound/relay_policy.h"
#include "engine/inbound/smtp_server_session.h"
#include "engine/smtp/smtp_command.h"

namespace {

using postern::engine::AcceptedMessage;
using postern::engine::AuthOutcome;
using postern::engine::AuthRequest;
using postern::engine::CanonicalNotify;
using postern::engine::CommandVerb;
using postern::engine::CommandVerbName;
using postern::engine::DomainMatches;
using postern::engine::InboundPolicy;
using postern::engine::IsValidOrcpt;
using postern::engine::IsXtext;
using postern::engine::kCommandVerbCount;
using postern::engine::MailboxDomain;
using postern::engine::PartnerRule;
using postern::engine::RelayPolicy;
using postern::engine::SessionContext;
using postern::engine::SessionLimits;
using postern::engine::SmtpServerSession;
using postern::engine::TlsFacts;
using Event = SmtpServerSession::Event;
using TlsMode = SessionContext::TlsMode;

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
  limits.mail_rcpt_line_extension = 64;
  limits.max_text_line = 100;
  limits.max_errors = 8;
  return limits;
}

const RelayPolicy& Policy() {
  static const RelayPolicy* policy =
      new RelayPolicy(*RelayPolicy::Create({"example.com", ".example.net"}, {"192.0.2.0/24"}));
  return *policy;
}

// partner.example must use TLS; pinned.example must show the certificate
// with fingerprint 'a'*64; mail to secure.example.com must arrive over TLS.
const InboundPolicy& Inbound() {
  static const InboundPolicy* policy = [] {
    std::vector<PartnerRule> partners(2);
    partners[0].domain = ".partner.example";
    partners[0].require_tls = true;
    partners[1].domain = "pinned.example";
    partners[1].pins = {"sha256:" + std::string(64, 'a')};
    return new InboundPolicy(*InboundPolicy::Create(partners, {"secure.example.com"}));
  }();
  return *policy;
}

struct Options {
  bool trusted = false;
  bool spool_fails = false;
  TlsMode tls_mode = TlsMode::kNone;
  bool auth_enabled = false;
  AuthOutcome auth_outcome = AuthOutcome::kOk;
  bool client_cert = false;  // shows the pinned certificate
};

TlsFacts Facts(const Options& options) {
  TlsFacts facts;
  facts.version = "TLSv1.3";
  facts.cipher = "TLS_AES_128_GCM_SHA256";
  facts.bits = 128;
  facts.alg_bits = 128;
  if (options.client_cert) {
    facts.peer_cert_sha256 = std::string(64, 'a');
    facts.peer_spki_sha256 = std::string(64, 'b');
  }
  return facts;
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

// may_be_chunked: the input has a BDAT command somewhere, so a message may
// have come in chunks, which have no line limit and may get a final CRLF
// added beyond the size limit.
void CheckMessage(const AcceptedMessage& m, const SessionLimits& limits, bool may_be_chunked) {
  Check(!m.recipients.empty(), "a message has recipients");
  Check(m.recipients.size() <= limits.max_recipients, "recipient limit holds");
  Check(m.recipient_dsn.size() == m.recipients.size(), "one DSN entry per recipient");
  for (size_t i = 0; i < m.recipients.size(); ++i) {
    const auto& dsn = m.recipient_dsn[i];
    Check(dsn.address == m.recipients[i], "DSN entries follow the recipients");
    Check(dsn.notify.empty() || CanonicalNotify(dsn.notify) == dsn.notify, "NOTIFY is canonical");
    Check(dsn.orcpt.empty() || IsValidOrcpt(dsn.orcpt, m.smtputf8), "ORCPT is valid");
  }
  Check(m.dsn_ret.empty() || m.dsn_ret == "FULL" || m.dsn_ret == "HDRS", "RET is FULL or HDRS");
  Check(m.dsn_envid.size() <= 100 && IsXtext(m.dsn_envid, m.smtputf8), "ENVID is short xtext");
  Check(m.body.rfind("Received: from ", 0) == 0, "body starts with the Received header");
  // The HELO name is printable ASCII, so the first " +0000\r\n" ends the header.
  const size_t header_end = m.body.find(" +0000\r\n");
  Check(header_end != std::string::npos, "Received header has a date");
  const std::string_view content = std::string_view(m.body).substr(header_end + 8);
  Check(content.size() <= limits.max_message_size + (may_be_chunked ? 2 : 0), "size limit holds");
  // No bare CR or LF can reach the spool: that is the smuggling guard.
  size_t line_start = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] == '\r') {
      Check(i + 1 < content.size() && content[i + 1] == '\n', "CR only before LF");
    } else if (content[i] == '\n') {
      Check(i > 0 && content[i - 1] == '\r', "LF only after CR");
      Check(may_be_chunked || i - 1 - line_start <= limits.max_text_line - 2,
            "text line limit holds");
      line_start = i + 1;
    }
  }
  Check(content.empty() || content.size() >= 2, "content ends in CRLF");
  Check(content.empty() || content.substr(content.size() - 2) == "\r\n", "content ends in CRLF");
}

struct RunResult {
  std::string out;
  std::vector<std::string> bodies;
  std::vector<std::string> envelopes;  // sender, recipients and DSN, flattened
  std::vector<std::string> users;      // user names handed out for checking
  bool closed = false;
  std::array<uint64_t, kCommandVerbCount> command_counts{};
};

std::string Envelope(const AcceptedMessage& m) {
  std::string e = m.sender + "|" + m.dsn_ret + "|" + m.dsn_envid;
  for (const auto& r : m.recipient_dsn) e += "|" + r.address + "," + r.notify + "," + r.orcpt;
  return e;
}

RunResult Run(std::string_view input, const std::vector<size_t>& chunk_sizes,
              const Options& options) {
  SessionContext context;
  context.hostname = "fuzz.test";
  context.listener = "mx";
  context.client_ip = options.trusted ? "192.0.2.1" : "::ffff:203.0.113.9";
  context.relay = &Policy();
  context.limits = FuzzLimits();
  context.tls_mode = options.tls_mode;
  context.auth_enabled = options.auth_enabled;
  context.sender_login_match = options.auth_outcome == AuthOutcome::kOk && !options.trusted;
  context.inbound = &Inbound();
  SmtpServerSession session(context);
  RunResult result;
  const bool may_be_chunked =
      absl::AsciiStrToUpper(absl::string_view(input.data(), input.size())).find("BDAT") !=
      std::string::npos;
  if (options.tls_mode == TlsMode::kImplicit) {
    session.TlsStarted(Facts(options));
    Check(session.tls_active(), "implicit TLS is active from the start");
  }
  session.Start(&result.out);
  size_t pos = 0;
  size_t next_chunk = 0;
  while (pos < input.size() && !result.closed) {
    const size_t n =
        chunk_sizes.empty() ? input.size() : chunk_sizes[next_chunk++ % chunk_sizes.size()];
    const size_t fed = std::min(n, input.size() - pos);
    session.Receive(input.substr(pos, fed));
    pos += fed;
    for (;;) {
      const uint64_t discarded_before = session.discarded_after_starttls();
      const Event event = session.Process(&result.out);
      if (event == Event::kNeedInput) {
        Check(session.buffered_bytes() <
                  context.limits.max_command_line + context.limits.mail_rcpt_line_extension,
              "at most one partial command line stays buffered");
        Check(
            session.phase() == SmtpServerSession::Phase::kCommand || session.buffered_bytes() == 0,
            "message content is consumed as it arrives");
        break;
      }
      if (event == Event::kClose) {
        result.closed = true;
        break;
      }
      if (event == Event::kStartTls) {
        Check(options.tls_mode == TlsMode::kOffer || options.tls_mode == TlsMode::kRequire,
              "STARTTLS only where it is offered");
        Check(!session.tls_active(), "no STARTTLS inside TLS");
        Check(result.out.size() >= 30 &&
                  result.out.substr(result.out.size() - 30) == "220 2.0.0 Ready to start TLS\r\n",
              "kStartTls follows the 220");
        Check(session.buffered_bytes() == 0, "nothing after STARTTLS is kept");
        std::string held;
        Check(session.Process(&held) == Event::kStartTls && held.empty(),
              "nothing is processed before the handshake");
        // Where the STARTTLS line ended in the stream; the plaintext after
        // it, up to the handshake byte, is never read.
        const size_t line_end = pos - (session.discarded_after_starttls() - discarded_before);
        const size_t hello = input.find('\x16', line_end);
        if (hello == std::string_view::npos) {
          result.closed = true;  // the handshake fails: the connection closes
          break;
        }
        session.TlsStarted(Facts(options));
        Check(session.tls_active() && !session.authenticated(), "TLS resets AUTH");
        pos = hello + 1;
        break;  // read on from the TLS stream
      }
      if (event == Event::kAuthCheck) {
        Check(options.auth_enabled && session.tls_active(), "AUTH only when offered");
        AuthRequest request = session.TakeAuthRequest();
        Check(!request.username.empty() && !request.password.empty(), "credentials are complete");
        result.users.push_back(request.username);
        std::string held;
        Check(session.Process(&held) == Event::kWaitAuth && held.empty(),
              "nothing is processed while credentials are checked");
        session.AuthDone(options.auth_outcome, {"example.com", ".client.test"}, &result.out);
        Check(session.authenticated() == (options.auth_outcome == AuthOutcome::kOk),
              "authenticated exactly when the verdict says so");
        continue;
      }
      Check(event == Event::kSpool, "kWaitSpool/kWaitAuth only while something is outstanding");
      AcceptedMessage message = session.TakeMessage(kQueueId, absl::FromUnixSeconds(1795423258));
      CheckMessage(message, context.limits, may_be_chunked);
      result.envelopes.push_back(Envelope(message));
      // The HELO name is printable ASCII without tabs, so these line starts
      // can only be ours.
      constexpr std::string_view kBy = "\r\n\tby fuzz.test (Postern) with ";
      const size_t by = message.body.find(kBy);
      Check(by != std::string::npos, "Received has a by clause");
      const std::string_view with = std::string_view(message.body).substr(by + kBy.size(), 40);
      const bool tls_in_header =
          with.find(" tls TLS_AES_128_GCM_SHA256 id ") != std::string_view::npos &&
          message.body.find(
              "\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 "
              "bits))\r\n") != std::string::npos;
      Check(tls_in_header == session.tls_active(), "Received records TLS exactly when used");
      if (!session.tls_active()) {
        Check(options.tls_mode == TlsMode::kNone || options.tls_mode == TlsMode::kOffer,
              "no plaintext mail where TLS is required");
        Check(!DomainMatches(".partner.example", MailboxDomain(message.sender)),
              "no plaintext mail from a TLS-only partner");
        for (const std::string& recipient : message.recipients) {
          Check(!DomainMatches("secure.example.com", MailboxDomain(recipient)),
                "no plaintext mail to a TLS-only domain");
        }
      }
      if (DomainMatches("pinned.example", MailboxDomain(message.sender))) {
        Check(session.tls_active() && options.client_cert,
              "mail from a pinned partner only with its certificate");
      }
      result.bodies.push_back(std::move(message.body));
      std::string held;
      Check(session.Process(&held) == Event::kWaitSpool && held.empty(),
            "nothing is processed while spooling");
      session.SpoolDone(options.spool_fails ? absl::UnavailableError("fuzz") : absl::OkStatus(),
                        kQueueId, &result.out);
    }
  }
  result.command_counts = session.TakeCommandCounts();
  uint64_t counted = 0;
  for (size_t i = 0; i < kCommandVerbCount; ++i) {
    counted += result.command_counts[i];
    Check(!CommandVerbName(static_cast<CommandVerb>(i)).empty(), "every verb has a name");
  }
  Check(counted == session.commands(), "every command is counted under one verb");
  if (result.closed) {
    // Closed is final: more input produces nothing.
    std::string after;
    session.Receive("NOOP\r\n");
    const Event event = session.Process(&after);
    Check((event == Event::kClose || event == Event::kStartTls) && after.empty(),
          "closed stays closed");
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
  Options options;
  options.trusted = seed & 1;
  options.spool_fails = seed & 2;
  options.tls_mode = static_cast<TlsMode>((seed >> 2) & 3);
  options.auth_enabled = seed & 16;
  constexpr AuthOutcome kOutcomes[] = {AuthOutcome::kOk, AuthOutcome::kBad, AuthOutcome::kThrottled,
                                       AuthOutcome::kOk};
  options.auth_outcome = kOutcomes[(seed >> 5) & 3];
  options.client_cert = seed & 128;

  // Chunk sizes from a small LCG seeded by the first byte: mostly tiny cuts,
  // which is where incremental parsers break.
  std::vector<size_t> chunks;
  uint32_t state = seed * 2654435761u + 1;
  for (int i = 0; i < 32; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 16;
    chunks.push_back(r % 4 == 0 ? 1 + r % 300 : 1 + r % 7);
  }

  const RunResult whole = Run(input, {}, options);
  CheckReplies(whole.out);
  const RunResult chunked = Run(input, chunks, options);
  Check(chunked.out == whole.out, "replies do not depend on how input is cut");
  Check(chunked.bodies == whole.bodies, "messages do not depend on how input is cut");
  Check(chunked.envelopes == whole.envelopes, "envelopes do not depend on how input is cut");
  Check(chunked.command_counts == whole.command_counts,
        "command counts do not depend on how input is cut");
  Check(chunked.closed == whole.closed, "closing does not depend on how input is cut");
  Check(chunked.users == whole.users, "credentials do not depend on how input is cut");
  return 0;
}
