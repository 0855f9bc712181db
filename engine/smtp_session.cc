#include "engine/smtp_session.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/data_reader.h"
#include "engine/smtp_command.h"

namespace postern::engine {
namespace {

using Verb = SmtpCommand::Verb;

// Debian's absl is built with its own absl::string_view (not std::string_view),
// so views cross into absl explicitly.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

void Reply(std::string* out, std::string_view line) {
  out->append(line);
  out->append("\r\n");
}

// RFC 1870 SIZE value: digits. An overflowing number is still a number, just
// larger than any limit, so it saturates instead of being a syntax error.
bool ParseSizeValue(std::string_view value, uint64_t* size) {
  if (value.empty() || !std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) return false;
  if (!absl::SimpleAtoi(Absl(value), size)) *size = std::numeric_limits<uint64_t>::max();
  return true;
}

}  // namespace

struct SmtpSession::State {
  enum class Phase {
    kCommand,     // reading command lines
    kData,        // reading DATA content
    kSpoolReady,  // content complete; waiting for TakeMessage
    kWaitSpool,   // message taken; waiting for SpoolDone
    kClosed,      // a final reply was sent; nothing more is read
  };

  explicit State(SessionContext c) : context(std::move(c)) {}

  SessionContext context;
  Phase phase = Phase::kCommand;

  // Received bytes; [input_pos, end) is not processed yet.
  std::string input;
  size_t input_pos = 0;
  // After an over-long command line: drop bytes up to the next LF.
  bool discarding_line = false;

  // Per session.
  std::string helo;  // empty until EHLO/HELO
  bool esmtp = false;
  bool authenticated = false;  // set by AUTH once it exists

  // Per transaction (RSET, EHLO/HELO and the end of DATA clear these).
  bool in_mail = false;
  std::string sender;
  std::vector<std::string> recipients;
  bool smtputf8 = false;
  bool eight_bit_mime = false;
  std::optional<DataReader> data_reader;
  std::string content;

  uint64_t commands = 0;
  uint64_t messages_accepted = 0;
  size_t errors = 0;  // since the last accepted message
  std::vector<std::string> rejections;

  std::string_view Pending() const { return std::string_view(input).substr(input_pos); }

  void Compact() {
    if (phase == Phase::kClosed || input_pos == input.size()) {
      input.clear();
    } else if (input_pos > 0) {
      input.erase(0, input_pos);
    }
    input_pos = 0;
  }

  void ResetTransaction() {
    in_mail = false;
    sender.clear();
    recipients.clear();
    smtputf8 = false;
    eight_bit_mime = false;
    data_reader.reset();
    content = std::string();  // release the buffer, it may be large
  }

  void Close(std::string* out, std::string_view line) {
    Reply(out, line);
    phase = Phase::kClosed;
  }

  // A negative reply. Those caused by the client count towards max_errors,
  // as in Postfix's smtpd_hard_error_limit; "too many recipients" does not,
  // because RFC 5321 4.5.3.1.10 makes it a normal way to split a transaction.
  void Reject(std::string* out, std::string_view line, std::string_view reason,
              bool counts_as_error = true) {
    Reply(out, line);
    rejections.emplace_back(reason);
    if (!counts_as_error) return;
    ++errors;
    if (errors >= context.limits.max_errors) {
      rejections.emplace_back("too_many_errors");
      Close(out, absl::StrCat("421 4.7.0 ", context.hostname, " Error: too many errors"));
    }
  }

  SmtpSession::Event Run(std::string* out) {
    for (;;) {
      switch (phase) {
        case Phase::kClosed:
          return Event::kClose;
        case Phase::kSpoolReady:
          return Event::kSpool;
        case Phase::kWaitSpool:
          return Event::kWaitSpool;
        case Phase::kData:
          if (!StepData(out)) return Event::kNeedInput;
          break;
        case Phase::kCommand:
          if (!StepCommand(out)) return Event::kNeedInput;
          break;
      }
    }
  }

  // Handles one command line; false if no complete line is buffered.
  bool StepCommand(std::string* out) {
    const std::string_view pending = Pending();
    const size_t lf = pending.find('\n');
    if (discarding_line) {
      if (lf == std::string_view::npos) {
        input_pos = input.size();
        return false;
      }
      input_pos += lf + 1;
      discarding_line = false;
      return true;
    }
    const size_t limit = context.limits.max_command_line;
    if (lf == std::string_view::npos) {
      // Without its LF the line is already too long: answer now rather than
      // buffer an unbounded line, then drop the rest of it as it arrives.
      if (pending.size() >= limit) {
        ++commands;
        input_pos = input.size();
        discarding_line = true;
        Reject(out, "500 5.5.2 Line too long", "line_too_long");
        return true;  // the reject may have closed the session
      }
      return false;
    }
    ++commands;
    std::string_view line = pending.substr(0, lf);
    input_pos += lf + 1;
    if (lf + 1 > limit) {
      Reject(out, "500 5.5.2 Line too long", "line_too_long");
      return true;
    }
    // A bare LF ends a command line too. Unlike inside DATA this is harmless:
    // a command is never relayed, so there is nothing to smuggle.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    HandleCommand(line, out);
    return true;
  }

  // Feeds buffered input to the DATA reader; false if more input is needed.
  bool StepData(std::string* out) {
    input_pos += data_reader->Feed(Pending(), &content);
    // A rejected message may still be streaming in: free what was stored now.
    if (data_reader->result() != DataReader::Result::kOk && !content.empty()) {
      content = std::string();
    }
    if (!data_reader->done()) return false;
    const DataReader::Result result = data_reader->result();
    if (result == DataReader::Result::kOk) {
      phase = Phase::kSpoolReady;
      return true;
    }
    ResetTransaction();
    phase = Phase::kCommand;
    switch (result) {
      case DataReader::Result::kBareNewline:
        Reject(out, "550 5.6.11 Bare CR or LF not allowed", "bare_lf");
        break;
      case DataReader::Result::kLineTooLong:
        Reject(out, "500 5.5.2 Line too long", "line_too_long");
        break;
      case DataReader::Result::kTooLarge:
        Reject(out, "552 5.3.4 Message size exceeds fixed limit", "too_large");
        break;
      case DataReader::Result::kOk:
        break;
    }
    return true;
  }

  void HandleCommand(std::string_view line, std::string* out) {
    absl::StatusOr<SmtpCommand> parsed = ParseSmtpCommand(line);
    if (!parsed.ok()) {
      // The parser's message is the reply line (see smtp_command.h).
      const absl::string_view reply = parsed.status().message();
      Reject(out, std::string_view(reply.data(), reply.size()),
             parsed.status().code() == absl::StatusCode::kUnimplemented ? "unknown_command"
                                                                        : "syntax");
      return;
    }
    const SmtpCommand& cmd = *parsed;
    switch (cmd.verb) {
      case Verb::kEhlo:
      case Verb::kHelo:
        return HandleHelo(cmd, out);
      case Verb::kMail:
        return HandleMail(cmd, out);
      case Verb::kRcpt:
        return HandleRcpt(cmd, out);
      case Verb::kData:
        return HandleData(out);
      case Verb::kRset:
        ResetTransaction();
        return Reply(out, "250 2.0.0 Ok");
      case Verb::kNoop:
        return Reply(out, "250 2.0.0 Ok");
      case Verb::kQuit:
        return Close(out, "221 2.0.0 Bye");
      case Verb::kHelp:
        return Reply(out, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY");
      case Verb::kVrfy:
        // RFC 5321 3.5.3: 252 when we will not verify but will try delivery.
        return Reply(out,
                     "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
      case Verb::kExpn:
      // Not offered in EHLO yet; each gets its handler when its issue lands.
      case Verb::kStarttls:
      case Verb::kAuth:
      case Verb::kBdat:
        return Reject(out, "502 5.5.1 Command not implemented", "not_implemented");
      case Verb::kUnknown:  // the parser reports unknown verbs as errors
        break;
    }
    Reject(out, "500 5.5.2 Error: command not recognized", "unknown_command");
  }

  void HandleHelo(const SmtpCommand& cmd, std::string* out) {
    // RFC 5321 4.1.4: a repeated EHLO/HELO resets the transaction like RSET.
    ResetTransaction();
    helo = cmd.argument;
    esmtp = cmd.verb == Verb::kEhlo;
    if (!esmtp) return Reply(out, absl::StrCat("250 ", context.hostname));
    // The extensions offered. STARTTLS, AUTH, CHUNKING and DSN are added here
    // (per listener) together with their command handlers.
    const std::string keywords[] = {
        "PIPELINING",
        absl::StrCat("SIZE ", context.limits.max_message_size),
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    };
    Reply(out, absl::StrCat("250-", context.hostname));
    for (size_t i = 0; i < std::size(keywords); ++i) {
      Reply(out, absl::StrCat(i + 1 < std::size(keywords) ? "250-" : "250 ", keywords[i]));
    }
  }

  void HandleMail(const SmtpCommand& cmd, std::string* out) {
    if (helo.empty()) return Reject(out, "503 5.5.1 Error: send HELO/EHLO first", "bad_sequence");
    if (in_mail) return Reject(out, "503 5.5.1 Error: nested MAIL command", "bad_sequence");
    bool utf8 = false;
    bool eight_bit = false;
    uint64_t declared_size = 0;
    for (const auto& [key, value] : cmd.parameters) {
      if (key == "SIZE") {
        if (!ParseSizeValue(value, &declared_size)) {
          return Reject(out, "501 5.5.4 Bad SIZE parameter syntax", "syntax");
        }
      } else if (key == "BODY") {
        if (absl::EqualsIgnoreCase(value, "8BITMIME")) {
          eight_bit = true;
        } else if (!absl::EqualsIgnoreCase(value, "7BIT")) {
          return Reject(out, "501 5.5.4 Bad BODY parameter syntax", "syntax");
        }
      } else if (key == "SMTPUTF8") {
        if (!value.empty()) return Reject(out, "501 5.5.4 Bad SMTPUTF8 parameter syntax", "syntax");
        utf8 = true;
      } else {
        // RET/ENVID (DSN) and AUTH= are not offered yet. The keyword is
        // alphanumeric (checked by the parser), so echoing it is safe.
        return Reject(out, absl::StrCat("555 5.5.4 Unsupported option: ", key),
                      "unsupported_parameter");
      }
    }
    if (declared_size > context.limits.max_message_size) {
      return Reject(out, "552 5.3.4 Message size exceeds fixed limit", "too_large");
    }
    if (!utf8 && HasNonAscii(cmd.path)) {
      return Reject(out, "553 5.6.7 Must declare SMTPUTF8 to send unicode address",
                    "smtputf8_required");
    }
    in_mail = true;
    sender = cmd.path;
    smtputf8 = utf8;
    eight_bit_mime = eight_bit;
    Reply(out, "250 2.1.0 Ok");
  }

  void HandleRcpt(const SmtpCommand& cmd, std::string* out) {
    if (!in_mail) return Reject(out, "503 5.5.1 Error: need MAIL command", "bad_sequence");
    if (!cmd.parameters.empty()) {
      // NOTIFY/ORCPT belong to DSN, which is not offered yet.
      return Reject(out, absl::StrCat("555 5.5.4 Unsupported option: ", cmd.parameters[0].first),
                    "unsupported_parameter");
    }
    if (!smtputf8 && HasNonAscii(cmd.path)) {
      return Reject(out, "553 5.6.7 Must declare SMTPUTF8 to send unicode address",
                    "smtputf8_required");
    }
    if (recipients.size() >= context.limits.max_recipients) {
      return Reject(out, "452 4.5.3 Too many recipients", "too_many_recipients",
                    /*counts_as_error=*/false);
    }
    // <postmaster> has no domain, so only trusted clients get it through.
    if (context.relay == nullptr ||
        !context.relay->MayRelay(context.client_ip, MailboxDomain(cmd.path), authenticated)) {
      return Reject(out, "554 5.7.1 Relay access denied", "relay_denied");
    }
    recipients.push_back(cmd.path);
    Reply(out, "250 2.1.5 Ok");
  }

  void HandleData(std::string* out) {
    if (!in_mail) return Reject(out, "503 5.5.1 Error: need RCPT command", "bad_sequence");
    if (recipients.empty()) return Reject(out, "554 5.5.1 No valid recipients", "bad_sequence");
    data_reader.emplace(context.limits.max_message_size, context.limits.max_text_line);
    content.clear();
    phase = Phase::kData;
    Reply(out, "354 End data with <CR><LF>.<CR><LF>");
  }

  std::string ReceivedHeader(std::string_view queue_id, absl::Time now) const {
    // RFC 3848 / RFC 6531 3.7.3 protocol names; TLS and AUTH will add the
    // "S"/"A" suffixes when they exist.
    const std::string_view protocol = smtputf8 ? "UTF8SMTP" : (esmtp ? "ESMTP" : "SMTP");
    std::string header =
        absl::StrCat("Received: from ", helo, " ([", context.client_ip, "])\r\n\tby ",
                     context.hostname, " (Postern) with ", Absl(protocol), " id ", Absl(queue_id));
    // Naming the recipient is only safe when there is one: with several it
    // would disclose the others' addresses to each of them.
    if (recipients.size() == 1) absl::StrAppend(&header, "\r\n\tfor <", recipients[0], ">");
    absl::StrAppend(&header, "; ",
                    absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()),
                    "\r\n");
    return header;
  }
};

SmtpSession::SmtpSession(SessionContext context)
    : state_(std::make_unique<State>(std::move(context))) {}

SmtpSession::~SmtpSession() = default;

void SmtpSession::Start(std::string* out) {
  Reply(out, absl::StrCat("220 ", state_->context.hostname, " ESMTP Postern"));
}

void SmtpSession::Receive(std::string_view bytes) {
  if (state_->phase == State::Phase::kClosed) return;
  state_->input.append(bytes);
}

SmtpSession::Event SmtpSession::Process(std::string* out) {
  const Event event = state_->Run(out);
  state_->Compact();
  return event;
}

AcceptedMessage SmtpSession::TakeMessage(std::string_view queue_id, absl::Time now) {
  State& s = *state_;
  assert(s.phase == State::Phase::kSpoolReady);
  AcceptedMessage message;
  if (s.phase != State::Phase::kSpoolReady) return message;
  message.sender = s.sender;
  message.recipients = s.recipients;
  message.helo = s.helo;
  message.smtputf8 = s.smtputf8;
  message.eight_bit_mime = s.eight_bit_mime;
  // Prepend in place: at worst one copy of the content, as with a fresh string.
  s.content.insert(0, s.ReceivedHeader(queue_id, now));
  message.body = std::move(s.content);
  s.content = std::string();
  s.phase = State::Phase::kWaitSpool;
  return message;
}

void SmtpSession::SpoolDone(const absl::Status& status, std::string_view queue_id,
                            std::string* out) {
  State& s = *state_;
  if (s.phase != State::Phase::kWaitSpool) return;  // closed meanwhile (timeout, shutdown)
  s.ResetTransaction();
  s.phase = State::Phase::kCommand;
  if (status.ok()) {
    ++s.messages_accepted;
    s.errors = 0;
    Reply(out, absl::StrCat("250 2.0.0 Ok: queued as ", Absl(queue_id)));
  } else {
    // Our failure, not the client's: not counted towards max_errors.
    s.Reject(out, "452 4.3.1 Insufficient system storage", "spool_error",
             /*counts_as_error=*/false);
  }
}

void SmtpSession::Timeout(std::string* out) {
  if (state_->phase == State::Phase::kClosed) return;
  state_->Close(out,
                absl::StrCat("421 4.4.2 ", state_->context.hostname, " Error: timeout exceeded"));
}

void SmtpSession::Shutdown(std::string* out) {
  if (state_->phase == State::Phase::kClosed) return;
  state_->Close(out,
                absl::StrCat("421 4.3.2 ", state_->context.hostname, " Service shutting down"));
}

uint64_t SmtpSession::commands() const { return state_->commands; }

uint64_t SmtpSession::messages_accepted() const { return state_->messages_accepted; }

size_t SmtpSession::buffered_bytes() const { return state_->input.size() - state_->input_pos; }

std::vector<std::string> SmtpSession::TakeRejections() {
  return std::exchange(state_->rejections, {});
}

}  // namespace postern::engine
