#include "engine/outbound/smtp_client_session.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"
#include "engine/smtp/smtp_reply.h"

namespace postern::engine {
namespace {

using Kind = ConnectionOutcome::Kind;
using Outcome = RecipientResult::Outcome;

bool HasNonAscii(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// Octets that would break a command line apart or hide in logs.
bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// A parameter value (xtext, NOTIFY list): one word, no controls.
bool IsParameterValue(std::string_view s) {
  return !HasControl(s) && s.find(' ') == std::string_view::npos;
}

// RFC 5321 4.1.1.1 ehlo-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
bool IsEhloKeyword(std::string_view s) {
  if (s.empty() || !absl::ascii_isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

// NOTIFY is a comma list; only the SUCCESS token counts (not a substring).
bool NotifyHasSuccess(std::string_view notify) {
  while (!notify.empty()) {
    const size_t comma = notify.find(',');
    if (absl::EqualsIgnoreCase(Absl(notify.substr(0, comma)), "SUCCESS")) return true;
    if (comma == std::string_view::npos) break;
    notify.remove_prefix(comma + 1);
  }
  return false;
}

// DATA content (RFC 5321 4.5.2): a '.' starting a line is doubled. Any bare
// CR or LF goes out as CRLF, so the body cannot contain a line break that a
// lenient server would read as the end of the data. A last line without a
// break gets one, then the terminating ".".
void AppendDotStuffed(std::string_view body, std::string* out) {
  out->reserve(out->size() + body.size() + body.size() / 64 + 5);
  bool line_start = true;
  size_t run = 0;  // start of the octets not yet copied
  size_t i = 0;
  while (i < body.size()) {
    const char c = body[i];
    if (c == '\r' || c == '\n') {
      out->append(body.data() + run, i - run);
      out->append("\r\n");
      i += (c == '\r' && i + 1 < body.size() && body[i + 1] == '\n') ? 2 : 1;
      run = i;
      line_start = true;
      continue;
    }
    if (line_start && c == '.') {
      out->append(body.data() + run, i - run);
      out->push_back('.');
      run = i;  // the original '.' is copied with the rest of the line
    }
    line_start = false;
    ++i;
  }
  out->append(body.data() + run, body.size() - run);
  if (!line_start) out->append("\r\n");
  out->append(".\r\n");
}

RecipientResult FromReply(std::string address, const SmtpReply& reply) {
  RecipientResult r;
  r.address = std::move(address);
  r.outcome = reply.positive()    ? Outcome::kDelivered
              : reply.transient() ? Outcome::kTemporary
                                  : Outcome::kPermanent;
  r.code = reply.code;
  r.enhanced_code = reply.EnhancedOrDefault();
  r.text = reply.Text();
  return r;
}

RecipientResult Local(std::string address, Outcome outcome, std::string enhanced,
                      std::string text) {
  RecipientResult r;
  r.address = std::move(address);
  r.outcome = outcome;
  r.enhanced_code = std::move(enhanced);
  r.text = std::move(text);
  return r;
}

}  // namespace

struct SmtpClientSession::State {
  enum class Phase {
    kGreeting,
    kEhlo,
    kHelo,
    kStartTls,   // STARTTLS sent, waiting for its reply
    kHandshake,  // 220 received; the driver runs TLS
    kReady,
    kMessage,
    kQuit,
    kClosed,
    kFailed,
  };
  // A reply still owed to us, in the order the commands went out.
  enum class Expect { kMail, kRcpt, kData, kDataEnd, kDataDiscard, kBdat, kRset };
  struct Pending {
    Expect what;
    size_t index;  // recipient or chunk
  };

  explicit State(SmtpClientOptions o) : options(std::move(o)), parser(options.reply_limits) {}

  SmtpClientOptions options;
  SmtpReplyParser parser;
  Phase phase = Phase::kGreeting;
  ConnectionOutcome outcome;
  std::string banner_host;
  ServerExtensions ext;
  bool tls_active = false;
  bool used_helo = false;
  uint64_t discarded = 0;

  // The transaction; message is non-null from StartMessage to TakeResult.
  const OutboundMessage* message = nullptr;
  MessageResult result;
  bool result_ready = false;
  std::vector<bool> settled;   // the recipient has its final result
  std::vector<bool> accepted;  // RCPT got 2xx
  size_t accepted_count = 0;
  bool mail_failed = false;
  std::optional<SmtpReply> data_failure;  // first refused BDAT chunk
  bool pipelined = false;
  bool bdat = false;
  std::vector<std::pair<size_t, size_t>> chunks;  // offset, length
  std::deque<Pending> pending;

  // --- connection level ---

  void SendHello(std::string_view verb, std::string* out) {
    absl::StrAppend(out, Absl(verb), " ", options.helo_name, "\r\n");
  }

  void Fail(Kind kind, std::string reason, std::string diagnostic,
            std::optional<SmtpReply> reply = std::nullopt) {
    outcome.kind = kind;
    outcome.reason = std::move(reason);
    outcome.diagnostic = std::move(diagnostic);
    outcome.reply = std::move(reply);
    phase = Phase::kFailed;
    parser.Discard();
    if (message == nullptr || result_ready) return;  // nothing in flight
    const char* enhanced = kind == Kind::kConnectionLost ? "4.4.2"
                           : kind == Kind::kTlsFailed    ? "4.7.5"
                                                         : "4.5.0";
    for (size_t i = 0; i < settled.size(); ++i) {
      if (settled[i]) continue;
      const bool relay_notice = result.recipients[i].success_notify_not_relayed;
      result.recipients[i] =
          Local(message->recipients[i].address, Outcome::kTemporary, enhanced, outcome.diagnostic);
      result.recipients[i].success_notify_not_relayed = relay_notice;
      settled[i] = true;
    }
    result.connection = outcome;
    result_ready = true;
  }

  // The server refused us: say goodbye (RFC 5321 3.1 asks for QUIT after a
  // 554 greeting) and give up.
  void Reject(std::string reason, const SmtpReply& reply, std::string* out) {
    out->append("QUIT\r\n");
    Fail(Kind::kRejected, std::move(reason), reply.ToString(), reply);
  }

  void TlsUnavailable(std::string reason, std::optional<SmtpReply> reply, std::string* out) {
    out->append("QUIT\r\n");
    std::string diagnostic = reply ? "STARTTLS refused: " + reply->ToString()
                                   : std::string("STARTTLS not offered by the server");
    Fail(Kind::kTlsUnavailable, std::move(reason), std::move(diagnostic), std::move(reply));
  }

  void Unexpected(std::string_view context, const SmtpReply& reply) {
    Fail(Kind::kProtocolError, "unexpected-reply",
         absl::StrCat("unexpected reply ", Absl(context), ": ", reply.ToString()), reply);
  }

  // A 421 (RFC 5321 3.8): the server is closing; everyone still waiting
  // gets it, a temporary failure.
  void Close421(const SmtpReply& reply) {
    outcome.kind = Kind::kServiceClosing;
    outcome.reason = "service-closing";
    outcome.diagnostic = reply.ToString();
    outcome.reply = reply;
    phase = Phase::kClosed;
    parser.Discard();
    if (message == nullptr || result_ready) return;  // nothing in flight
    for (size_t i = 0; i < settled.size(); ++i) {
      if (!settled[i]) Settle(i, reply);
    }
    result.connection = outcome;
    result_ready = true;
  }

  void ParseExtensions(const SmtpReply& reply) {
    ext = ServerExtensions();
    // The first line is the server's name and greeting text.
    for (size_t i = 1; i < reply.lines.size(); ++i) {
      std::string_view line = reply.lines[i];
      const size_t space = line.find(' ');
      const std::string_view word = line.substr(0, space);
      if (!IsEhloKeyword(word)) continue;
      std::string keyword = absl::AsciiStrToUpper(Absl(word));
      std::string_view params =
          space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
      while (!params.empty() && params.front() == ' ') params.remove_prefix(1);
      if (keyword == "STARTTLS") {
        ext.starttls = true;
      } else if (keyword == "PIPELINING") {
        ext.pipelining = true;
      } else if (keyword == "SIZE") {
        ext.size = true;
        const std::string_view value = params.substr(0, params.find(' '));
        // RFC 1870: a missing or zero value means no fixed limit. A value
        // too large for 64 bits is no limit we could reach either.
        if (!value.empty() &&
            std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          if (!absl::SimpleAtoi(Absl(value), &ext.size_limit)) ext.size_limit = 0;
        }
      } else if (keyword == "8BITMIME") {
        ext.eight_bit_mime = true;
      } else if (keyword == "SMTPUTF8") {
        ext.smtputf8 = true;
      } else if (keyword == "CHUNKING") {
        ext.chunking = true;
      } else if (keyword == "DSN") {
        ext.dsn = true;
      } else if (keyword == "ENHANCEDSTATUSCODES") {
        ext.enhanced_status_codes = true;
      }
      ext.keywords.push_back(std::move(keyword));
    }
  }

  // EHLO or HELO succeeded: STARTTLS next, or ready.
  void AfterHello(std::string* out) {
    if (!tls_active && options.tls != SmtpClientOptions::Tls::kNever && ext.starttls) {
      out->append("STARTTLS\r\n");
      phase = Phase::kStartTls;
    } else if (!tls_active && options.tls == SmtpClientOptions::Tls::kRequired) {
      TlsUnavailable("starttls-not-supported", std::nullopt, out);
    } else {
      phase = Phase::kReady;
    }
  }

  void OnReply(const SmtpReply& reply, std::string* out) {
    switch (phase) {
      case Phase::kGreeting:
        if (reply.code == 220) {
          const std::string& first = reply.lines.empty() ? std::string() : reply.lines[0];
          banner_host = first.substr(0, first.find(' '));
          SendHello("EHLO", out);
          phase = Phase::kEhlo;
        } else if (reply.transient() || reply.permanent()) {
          Reject("greeting-rejected", reply, out);
        } else {
          Unexpected("as greeting", reply);
        }
        return;
      case Phase::kEhlo:
        if (reply.positive()) {
          ParseExtensions(reply);
          AfterHello(out);
        } else if (reply.permanent()) {
          // RFC 5321 3.2: a server that does not know EHLO still knows HELO.
          used_helo = true;
          SendHello("HELO", out);
          phase = Phase::kHelo;
        } else if (reply.transient()) {
          Reject("ehlo-rejected", reply, out);
        } else {
          Unexpected("to EHLO", reply);
        }
        return;
      case Phase::kHelo:
        if (reply.positive()) {
          ext = ServerExtensions();
          AfterHello(out);
        } else if (reply.transient() || reply.permanent()) {
          Reject("helo-rejected", reply, out);
        } else {
          Unexpected("to HELO", reply);
        }
        return;
      case Phase::kStartTls:
        if (reply.code == 220) {
          // Whatever follows the 220 in plaintext was not sent inside TLS.
          discarded += parser.Discard();
          phase = Phase::kHandshake;
        } else if (options.tls == SmtpClientOptions::Tls::kRequired) {
          TlsUnavailable("starttls-rejected", reply, out);
        } else {
          phase = Phase::kReady;  // opportunistic: on in plaintext
        }
        return;
      case Phase::kReady:
        Unexpected("while idle", reply);
        return;
      case Phase::kMessage:
        OnMessageReply(reply, out);
        return;
      case Phase::kQuit:
        phase = Phase::kClosed;
        parser.Discard();
        return;
      case Phase::kHandshake:
      case Phase::kClosed:
      case Phase::kFailed:
        assert(false);  // Process() never reads in these phases
        return;
    }
  }

  // --- transaction ---

  bool NeedsSmtpUtf8(const OutboundMessage& m) const {
    if (m.smtputf8 || HasNonAscii(m.sender) || HasNonAscii(m.dsn_envid)) return true;
    return std::any_of(m.recipients.begin(), m.recipients.end(), [](const OutboundRecipient& r) {
      return HasNonAscii(r.address) || HasNonAscii(r.orcpt);
    });
  }

  void Settle(size_t i, const SmtpReply& reply) {
    const bool relay_notice = result.recipients[i].success_notify_not_relayed;
    result.recipients[i] = FromReply(message->recipients[i].address, reply);
    result.recipients[i].success_notify_not_relayed = relay_notice;
    settled[i] = true;
  }

  void SettleAccepted(const SmtpReply& reply) {
    for (size_t i = 0; i < settled.size(); ++i) {
      if (accepted[i] && !settled[i]) Settle(i, reply);
    }
    result.data_reply = reply;
  }

  void SettleAllLocally(std::string enhanced, const std::string& text) {
    for (size_t i = 0; i < settled.size(); ++i) {
      const bool relay_notice = result.recipients[i].success_notify_not_relayed;
      result.recipients[i] =
          Local(message->recipients[i].address, Outcome::kPermanent, enhanced, text);
      result.recipients[i].success_notify_not_relayed = relay_notice;
      settled[i] = true;
    }
    result_ready = true;
  }

  void Finish() {
    assert(pending.empty());
    assert(std::all_of(settled.begin(), settled.end(), [](bool b) { return b; }));
    phase = Phase::kReady;
    result_ready = true;
  }

  void SendMail(std::string* out) {
    const OutboundMessage& m = *message;
    absl::StrAppend(out, "MAIL FROM:<", m.sender, ">");
    if (ext.size) absl::StrAppend(out, " SIZE=", m.body.size());
    if (m.eight_bit && ext.eight_bit_mime) out->append(" BODY=8BITMIME");
    if (NeedsSmtpUtf8(m)) out->append(" SMTPUTF8");
    if (ext.dsn) {
      if (!m.dsn_ret.empty()) absl::StrAppend(out, " RET=", absl::AsciiStrToUpper(m.dsn_ret));
      if (!m.dsn_envid.empty()) absl::StrAppend(out, " ENVID=", m.dsn_envid);
    }
    out->append("\r\n");
    pending.push_back({Expect::kMail, 0});
  }

  void SendRcpt(size_t i, std::string* out) {
    const OutboundRecipient& r = message->recipients[i];
    absl::StrAppend(out, "RCPT TO:<", r.address, ">");
    if (ext.dsn) {
      if (!r.notify.empty()) absl::StrAppend(out, " NOTIFY=", absl::AsciiStrToUpper(r.notify));
      if (!r.orcpt.empty()) absl::StrAppend(out, " ORCPT=", r.orcpt);
    }
    out->append("\r\n");
    pending.push_back({Expect::kRcpt, i});
  }

  void SendData(std::string* out) {
    out->append("DATA\r\n");
    pending.push_back({Expect::kData, 0});
  }

  void SendRset(std::string* out) {
    out->append("RSET\r\n");
    pending.push_back({Expect::kRset, 0});
  }

  void SendChunk(size_t j, std::string* out) {
    const auto [offset, length] = chunks[j];
    absl::StrAppend(out, "BDAT ", length, j + 1 == chunks.size() ? " LAST" : "", "\r\n");
    out->append(message->body, offset, length);
    pending.push_back({Expect::kBdat, j});
  }

  // Every RCPT reply is in (or MAIL failed): the data, or a reset.
  void AfterRcpts(std::string* out) {
    if (accepted_count == 0) {
      SendRset(out);
    } else if (bdat) {
      if (pipelined) {
        for (size_t j = 0; j < chunks.size(); ++j) SendChunk(j, out);
      } else {
        SendChunk(0, out);
      }
    } else {
      SendData(out);
    }
  }

  void OnMessageReply(const SmtpReply& reply, std::string* out) {
    assert(!pending.empty());
    const Pending p = pending.front();
    pending.pop_front();
    const size_t n = settled.size();
    if (p.what == Expect::kData) {
      if (reply.code != 354 && !reply.transient() && !reply.permanent()) {
        Unexpected("to DATA", reply);
        return;
      }
    } else if (reply.reply_class() == 3) {
      Unexpected("(3xx outside DATA)", reply);
      return;
    }
    switch (p.what) {
      case Expect::kMail:
        if (!reply.positive()) {
          // Every recipient shares MAIL's fate; pipelined RCPT replies
          // (503 "need MAIL") say nothing about them.
          mail_failed = true;
          for (size_t i = 0; i < n; ++i) Settle(i, reply);
          if (!pipelined) SendRset(out);
        } else if (!pipelined) {
          SendRcpt(0, out);
        }
        return;
      case Expect::kRcpt:
        if (mail_failed) {
          // Settled by the MAIL reply.
        } else if (reply.positive()) {
          accepted[p.index] = true;
          ++accepted_count;
        } else {
          Settle(p.index, reply);
        }
        if (!pipelined) {
          if (p.index + 1 < n) {
            SendRcpt(p.index + 1, out);
          } else {
            AfterRcpts(out);
          }
        } else if (bdat && p.index + 1 == n) {
          AfterRcpts(out);
        }
        return;
      case Expect::kData:
        if (reply.code == 354) {
          if (accepted_count > 0) {
            AppendDotStuffed(message->body, out);
            pending.push_back({Expect::kDataEnd, 0});
          } else {
            // A server that says 354 with nobody accepted (RFC 2920 says it
            // must not): end an empty data section, then reset.
            out->append(".\r\n");
            pending.push_back({Expect::kDataDiscard, 0});
          }
        } else {
          if (accepted_count > 0) SettleAccepted(reply);
          SendRset(out);
        }
        return;
      case Expect::kDataEnd:
        SettleAccepted(reply);
        Finish();
        return;
      case Expect::kDataDiscard:
        SendRset(out);
        return;
      case Expect::kBdat: {
        // RFC 3030 2: after a refused chunk no more are sent; those already
        // pipelined are refused too and their replies consumed here.
        if (!reply.positive() && !data_failure) data_failure = reply;
        const bool last = p.index + 1 == chunks.size();
        if (data_failure && (!pipelined || last)) {
          SettleAccepted(*data_failure);
          SendRset(out);
        } else if (!last) {
          if (!pipelined) SendChunk(p.index + 1, out);
        } else {
          SettleAccepted(reply);
          Finish();
        }
        return;
      }
      case Expect::kRset:
        if (reply.positive()) {
          Finish();
        } else {
          // The server will not reset: the connection cannot be reused.
          Fail(Kind::kProtocolError, "rset-failed", "RSET refused: " + reply.ToString(), reply);
        }
        return;
    }
  }
};

SmtpClientSession::SmtpClientSession(SmtpClientOptions options)
    : state_(std::make_unique<State>(std::move(options))) {}

SmtpClientSession::~SmtpClientSession() = default;

void SmtpClientSession::Receive(std::string_view bytes) {
  State& s = *state_;
  switch (s.phase) {
    case State::Phase::kClosed:
    case State::Phase::kFailed:
      return;
    case State::Phase::kHandshake:
      s.discarded += bytes.size();
      return;
    default:
      s.parser.Receive(bytes);
  }
}

SmtpClientSession::Event SmtpClientSession::Process(std::string* out) {
  State& s = *state_;
  for (;;) {
    switch (s.phase) {
      case State::Phase::kClosed:
        return Event::kClosed;
      case State::Phase::kFailed:
        return Event::kFailed;
      case State::Phase::kHandshake:
        return Event::kStartTls;
      case State::Phase::kReady:
        if (s.result_ready) return Event::kMessageDone;
        break;
      default:
        break;
    }
    SmtpReply reply;
    switch (s.parser.Next(&reply)) {
      case SmtpReplyParser::Result::kNeedMore:
        return s.phase == State::Phase::kReady ? Event::kReady : Event::kNeedInput;
      case SmtpReplyParser::Result::kError:
        s.Fail(Kind::kProtocolError, "malformed-reply",
               absl::StrCat("malformed reply: ", s.parser.error().message()));
        continue;
      case SmtpReplyParser::Result::kReply:
        break;
    }
    if (reply.code == 421 && s.phase != State::Phase::kQuit) {
      s.Close421(reply);
      continue;
    }
    s.OnReply(reply, out);
  }
}

absl::Status SmtpClientSession::StartMessage(const OutboundMessage& message, std::string* out) {
  State& s = *state_;
  if (s.phase != State::Phase::kReady || s.result_ready) {
    return absl::FailedPreconditionError("StartMessage outside kReady");
  }
  assert(s.tls_active || s.options.tls != SmtpClientOptions::Tls::kRequired);
  if (message.recipients.empty()) return absl::InvalidArgumentError("no recipients");
  if (HasControl(message.sender)) return absl::InvalidArgumentError("control octet in sender");
  for (const OutboundRecipient& r : message.recipients) {
    if (r.address.empty()) return absl::InvalidArgumentError("empty recipient");
    if (HasControl(r.address)) return absl::InvalidArgumentError("control octet in recipient");
    if (!IsParameterValue(r.notify) || !IsParameterValue(r.orcpt)) {
      return absl::InvalidArgumentError("malformed NOTIFY or ORCPT");
    }
  }
  const std::string ret = absl::AsciiStrToUpper(message.dsn_ret);
  if (!ret.empty() && ret != "FULL" && ret != "HDRS") {
    return absl::InvalidArgumentError("RET is not FULL or HDRS");
  }
  if (!IsParameterValue(message.dsn_envid)) return absl::InvalidArgumentError("malformed ENVID");

  const size_t n = message.recipients.size();
  s.message = &message;
  s.result = MessageResult();
  s.result.tls = s.tls_active;
  s.result.dsn_passed_on = s.ext.dsn;
  s.result.recipients.resize(n);
  for (size_t i = 0; i < n; ++i) {
    s.result.recipients[i].address = message.recipients[i].address;
    s.result.recipients[i].success_notify_not_relayed =
        !s.ext.dsn && NotifyHasSuccess(message.recipients[i].notify);
  }
  s.settled.assign(n, false);
  s.accepted.assign(n, false);
  s.accepted_count = 0;
  s.mail_failed = false;
  s.data_failure.reset();
  s.pending.clear();

  // What the server declared rules the message out: fail it here rather
  // than have it refused after the data went over the wire.
  if (s.ext.size && s.ext.size_limit > 0 && message.body.size() > s.ext.size_limit) {
    s.SettleAllLocally("5.3.4", absl::StrCat("message size ", message.body.size(),
                                             " exceeds the server's limit of ", s.ext.size_limit));
    return absl::OkStatus();
  }
  if (s.NeedsSmtpUtf8(message) && !s.ext.smtputf8) {
    s.SettleAllLocally("5.6.7", "the message needs SMTPUTF8, which the server does not support");
    return absl::OkStatus();
  }

  s.pipelined = s.ext.pipelining && s.options.use_pipelining;
  s.bdat = s.ext.chunking && s.options.use_chunking;
  s.result.sent_with_bdat = s.bdat;
  s.chunks.clear();
  if (s.bdat) {
    const size_t size = message.body.size();
    const size_t step = s.options.bdat_chunk_size == 0 ? size : s.options.bdat_chunk_size;
    for (size_t offset = 0; offset < size; offset += step) {
      s.chunks.emplace_back(offset, std::min(step, size - offset));
    }
    if (s.chunks.empty()) s.chunks.emplace_back(0, 0);  // "BDAT 0 LAST"
  }
  s.phase = State::Phase::kMessage;
  s.SendMail(out);
  if (s.pipelined) {
    // RFC 2920 3.1: MAIL, RCPT and DATA may go out together; BDAT waits for
    // the RCPT replies (see the header).
    for (size_t i = 0; i < n; ++i) s.SendRcpt(i, out);
    if (!s.bdat) s.SendData(out);
  }
  return absl::OkStatus();
}

std::optional<MessageResult> SmtpClientSession::TakeResult() {
  State& s = *state_;
  if (!s.result_ready) return std::nullopt;
  s.result_ready = false;
  s.message = nullptr;
  s.pending.clear();
  return std::move(s.result);
}

void SmtpClientSession::TlsStarted(std::string* out) {
  State& s = *state_;
  if (s.phase != State::Phase::kHandshake) {
    assert(false);
    return;
  }
  s.tls_active = true;
  s.ext = ServerExtensions();
  s.parser.Discard();
  s.SendHello("EHLO", out);
  s.phase = State::Phase::kEhlo;
}

void SmtpClientSession::TlsFailed(std::string_view reason) {
  State& s = *state_;
  if (s.phase != State::Phase::kHandshake) {
    assert(false);
    return;
  }
  s.Fail(Kind::kTlsFailed, "tls-handshake-failed",
         absl::StrCat("TLS handshake failed: ", Absl(reason)));
}

absl::Status SmtpClientSession::Quit(std::string* out) {
  State& s = *state_;
  if (s.phase != State::Phase::kReady || s.result_ready) {
    return absl::FailedPreconditionError("Quit outside kReady");
  }
  out->append("QUIT\r\n");
  s.phase = State::Phase::kQuit;
  return absl::OkStatus();
}

void SmtpClientSession::ConnectionLost(std::string_view reason) {
  State& s = *state_;
  switch (s.phase) {
    case State::Phase::kClosed:
    case State::Phase::kFailed:
      return;
    case State::Phase::kQuit:
      // We said goodbye; a server that hangs up without 221 is no failure.
      s.phase = State::Phase::kClosed;
      s.parser.Discard();
      return;
    default:
      s.Fail(Kind::kConnectionLost, "connection-lost",
             absl::StrCat("lost connection: ", Absl(reason)));
  }
}

const ConnectionOutcome& SmtpClientSession::outcome() const { return state_->outcome; }
const std::string& SmtpClientSession::banner_host() const { return state_->banner_host; }
const ServerExtensions& SmtpClientSession::extensions() const { return state_->ext; }
bool SmtpClientSession::tls_active() const { return state_->tls_active; }
bool SmtpClientSession::used_helo() const { return state_->used_helo; }
uint64_t SmtpClientSession::discarded_after_starttls() const { return state_->discarded; }
size_t SmtpClientSession::buffered_bytes() const { return state_->parser.buffered_bytes(); }

}  // namespace postern::engine
