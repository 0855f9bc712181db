#include "engine/inbound/smtp_server_session.h"

#include <algorithm>
#include <array>
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
#include "common/absl_compat.h"
#include "engine/smtp/bdat_reader.h"
#include "engine/smtp/data_reader.h"
#include "engine/smtp/smtp_command.h"

namespace postern::engine {
namespace {

using Verb = SmtpCommand::Verb;

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

// RFC 3461 4.4: an ENVID is at most 100 characters.
constexpr size_t kMaxEnvidLength = 100;

// "BDAT" chunk-size [ SP "LAST" ] (RFC 3030 2); `argument` is what follows
// the verb, blanks already trimmed. chunk-size is digits; one too large for
// uint64_t saturates (it is only ever compared with the size limit).
bool ParseBdatArgument(std::string_view argument, uint64_t* size, bool* last) {
  const size_t space = argument.find(' ');
  if (!ParseSizeValue(argument.substr(0, space), size)) return false;
  *last = false;
  if (space == std::string_view::npos) return true;
  std::string_view rest = argument.substr(space);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  *last = absl::EqualsIgnoreCase(Absl(rest), "LAST");
  return *last;
}

// True if `line` (after leading blanks) starts with the command `verb` (any
// case) followed by a space, or ends there.
bool StartsWithVerb(std::string_view line, std::string_view verb) {
  const size_t start = line.find_first_not_of(" \t");
  if (start == std::string_view::npos) return false;
  line.remove_prefix(start);
  if (!absl::StartsWithIgnoreCase(Absl(line), Absl(verb))) return false;
  return line.size() == verb.size() || line[verb.size()] == ' ' || line[verb.size()] == '\r' ||
         line[verb.size()] == '\n';
}

// Best-effort erasure of secrets: volatile stores the compiler cannot drop as
// dead (the session may not link libsodium's sodium_memzero; it stays pure).
void Wipe(char* p, size_t n) {
  volatile char* v = p;
  for (size_t i = 0; i < n; ++i) v[i] = 0;
}

// Every byte the string owns, including what a move or a shorter value left
// past size() (short values live inside the object): resize() to capacity()
// makes those bytes part of the string first.
void Wipe(std::string* s) {
  s->resize(s->capacity());
  Wipe(s->data(), s->size());
  s->clear();
}

// Strict RFC 4648 base64 as RFC 4954 requires: padded, no whitespace, no
// other alphabet. Returns false on anything else.
bool DecodeBase64(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int padding = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = in[i + j];
      if (c == '=' && last && j >= 2) {
        ++padding;
        v[j] = 0;
        continue;
      }
      if (padding > 0) return false;  // data after '='
      v[j] = value(c);
      if (v[j] < 0) return false;
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out->push_back(static_cast<char>(n >> 16));
    if (padding < 2) out->push_back(static_cast<char>((n >> 8) & 0xff));
    if (padding < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

// Library-supplied TLS names go into a header: keep them to a token alphabet
// so no value can ever break the header's syntax.
std::string HeaderToken(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') {
      out.push_back(c);
    }
  }
  return out.empty() ? std::string("unknown") : out;
}

}  // namespace

std::string_view CommandVerbName(CommandVerb verb) {
  switch (verb) {
    case CommandVerb::kEhlo:
      return "EHLO";
    case CommandVerb::kHelo:
      return "HELO";
    case CommandVerb::kMail:
      return "MAIL";
    case CommandVerb::kRcpt:
      return "RCPT";
    case CommandVerb::kData:
      return "DATA";
    case CommandVerb::kBdat:
      return "BDAT";
    case CommandVerb::kRset:
      return "RSET";
    case CommandVerb::kNoop:
      return "NOOP";
    case CommandVerb::kQuit:
      return "QUIT";
    case CommandVerb::kHelp:
      return "HELP";
    case CommandVerb::kVrfy:
      return "VRFY";
    case CommandVerb::kExpn:
      return "EXPN";
    case CommandVerb::kStarttls:
      return "STARTTLS";
    case CommandVerb::kAuth:
      return "AUTH";
    case CommandVerb::kUnknown:
      break;
  }
  return "UNKNOWN";
}

struct SmtpServerSession::State {
  enum class Phase {
    kCommand,     // reading command lines
    kData,        // reading DATA content
    kBdat,        // reading the octets of a BDAT chunk
    kSpoolReady,  // content complete; waiting for TakeMessage
    kWaitSpool,   // message taken; waiting for SpoolDone
    kStartTls,    // 220 sent for STARTTLS; waiting for TlsStarted
    kAuthReady,   // credentials complete; waiting for TakeAuthRequest
    kWaitAuth,    // credentials taken; waiting for AuthDone
    kClosed,      // a final reply was sent; nothing more is read
  };

  // Where an AUTH exchange stands between command lines (RFC 4954 4).
  enum class Sasl {
    kNone,           // not in an exchange: lines are commands
    kPlain,          // sent "334 ", expecting the PLAIN response
    kLoginUser,      // sent "334 VXNlcm5hbWU6" (Username:)
    kLoginPassword,  // sent "334 UGFzc3dvcmQ6" (Password:)
  };

  explicit State(SessionContext c) : context(std::move(c)) {}

  SessionContext context;
  Phase phase = Phase::kCommand;

  // Received bytes; [input_pos, end) is not processed yet.
  std::string input;
  size_t input_pos = 0;
  // After an over-long command line: drop bytes up to the next LF.
  bool discarding_line = false;

  // Per session (STARTTLS resets all but tls_active/tls).
  std::string helo;  // empty until EHLO/HELO
  bool esmtp = false;
  bool tls_active = false;
  TlsFacts tls;                           // meaningful while tls_active
  bool authenticated = false;             // AuthDone(kOk)
  std::vector<std::string> user_domains;  // from AuthDone(kOk)
  Sasl sasl = Sasl::kNone;
  AuthRequest auth;  // being collected, or waiting for TakeAuthRequest

  // Per transaction (RSET, EHLO/HELO and the end of DATA clear these).
  bool in_mail = false;
  std::string sender;
  std::vector<std::string> recipients;
  bool smtputf8 = false;
  bool eight_bit_mime = false;
  std::optional<DataReader> data_reader;
  // CHUNKING: set by the transaction's first chunk that is kept; DATA and
  // RCPT are refused from then on (RFC 3030 3 forbids mixing).
  std::optional<BdatReader> bdat;
  std::string content;
  std::string dsn_ret;
  std::string dsn_envid;
  std::vector<RecipientDsn> recipient_dsn;  // parallel to recipients

  // The BDAT chunk being read (Phase::kBdat).
  uint64_t chunk_size = 0;
  uint64_t chunk_remaining = 0;
  bool chunk_last = false;
  // Empty: the octets are part of the message. Otherwise they are discarded
  // and this is the reply once they have all been consumed.
  std::string_view chunk_reject;
  std::string_view chunk_reject_reason;

  uint64_t commands = 0;
  std::array<uint64_t, kCommandVerbCount> command_counts{};
  uint64_t messages_accepted = 0;
  uint64_t discarded_after_starttls = 0;
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
    bdat.reset();
    content = std::string();  // release the buffer, it may be large
    dsn_ret.clear();
    dsn_envid.clear();
    recipient_dsn.clear();
  }

  void CountCommand(CommandVerb verb) {
    ++commands;
    ++command_counts[static_cast<size_t>(verb)];
  }

  void ForgetAuthExchange() {
    sasl = Sasl::kNone;
    Wipe(&auth.username);
    Wipe(&auth.password);
  }

  void Close(std::string* out, std::string_view line) {
    Reply(out, line);
    ForgetAuthExchange();
    phase = Phase::kClosed;
  }

  // Until TLS is up, the listener refuses mail commands (RFC 3207 4).
  bool TlsRequiredNow() const {
    return !tls_active && (context.tls_mode == SessionContext::TlsMode::kRequire ||
                           context.tls_mode == SessionContext::TlsMode::kImplicit);
  }

  bool AuthOffered() const { return context.auth_enabled && tls_active; }

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

  SmtpServerSession::Event Run(std::string* out) {
    for (;;) {
      switch (phase) {
        case Phase::kClosed:
          return Event::kClose;
        case Phase::kSpoolReady:
          return Event::kSpool;
        case Phase::kWaitSpool:
          return Event::kWaitSpool;
        case Phase::kStartTls:
          return Event::kStartTls;
        case Phase::kAuthReady:
          return Event::kAuthCheck;
        case Phase::kWaitAuth:
          return Event::kWaitAuth;
        case Phase::kData:
          if (!StepData(out)) return Event::kNeedInput;
          break;
        case Phase::kBdat:
          if (!StepBdat(out)) return Event::kNeedInput;
          break;
        case Phase::kCommand:
          if (!StepCommand(out)) return Event::kNeedInput;
          break;
      }
    }
  }

  // Handles one command line (or AUTH response line); false if no complete
  // line is buffered.
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
    const size_t limit = LineLimit(pending);
    if (lf == std::string_view::npos) {
      // Without its LF the line is already too long: answer now rather than
      // buffer an unbounded line, then drop the rest of it as it arrives.
      if (pending.size() >= limit) {
        const bool bdat_line = sasl == Sasl::kNone && StartsWithVerb(pending, "BDAT");
        Wipe(input.data() + input_pos, pending.size());  // may be a secret
        input_pos = input.size();
        discarding_line = true;
        LineTooLong(bdat_line, out);
        return true;  // the reject may have closed the session
      }
      return false;
    }
    const size_t line_start = input_pos;
    std::string_view line = pending.substr(0, lf);
    input_pos += lf + 1;
    if (lf + 1 > limit) {
      const bool bdat_line = sasl == Sasl::kNone && StartsWithVerb(line, "BDAT");
      Wipe(input.data() + line_start, lf + 1);
      LineTooLong(bdat_line, out);
      return true;
    }
    // A bare LF ends a command line too. Unlike inside DATA this is harmless:
    // a command is never relayed, so there is nothing to smuggle.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (sasl != Sasl::kNone) {
      HandleSaslResponse(line, out);
      Wipe(input.data() + line_start, lf + 1);
      return true;
    }
    // AUTH may carry an initial response: a secret.
    const size_t verb_start = line.find_first_not_of(" \t");
    const bool secret = verb_start != std::string_view::npos &&
                        absl::StartsWithIgnoreCase(Absl(line.substr(verb_start)), "AUTH");
    HandleCommand(line, out);
    if (secret) Wipe(input.data() + line_start, lf + 1);
    return true;
  }

  // The longest line allowed for the command that `line` starts (CRLF
  // included): MAIL and RCPT may carry more parameters than the others.
  size_t LineLimit(std::string_view line) const {
    const size_t limit = context.limits.max_command_line;
    if (sasl == Sasl::kNone && (StartsWithVerb(line, "MAIL") || StartsWithVerb(line, "RCPT"))) {
      return limit + context.limits.mail_rcpt_line_extension;
    }
    return limit;
  }

  void LineTooLong(bool bdat_line, std::string* out) {
    if (sasl != Sasl::kNone) {
      ForgetAuthExchange();
      return Reject(out, "500 5.5.6 Authentication exchange line is too long", "line_too_long");
    }
    CountCommand(CommandVerb::kUnknown);
    Reject(out, "500 5.5.2 Line too long", "line_too_long");
    // No chunk size could be read, so the chunk's octets would be taken
    // for commands.
    if (bdat_line) LoseBdatSync(out);
  }

  // After a BDAT line that could not be parsed: where its chunk ends is
  // unknown, and reading its octets as commands would let content run as
  // commands (the smuggling hazard). Nothing after it can be trusted.
  void LoseBdatSync(std::string* out) {
    if (phase == Phase::kClosed) return;
    rejections.emplace_back("bdat_out_of_sync");
    Close(out, absl::StrCat("421 4.5.0 ", context.hostname, " Error: BDAT stream out of sync"));
  }

  // Consumes the octets of the current BDAT chunk; false if more input is
  // needed. Then answers the chunk.
  bool StepBdat(std::string* out) {
    const std::string_view pending = Pending();
    const size_t take = static_cast<size_t>(std::min<uint64_t>(chunk_remaining, pending.size()));
    if (chunk_reject.empty()) {
      bdat->Feed(pending.substr(0, take), &content);
      // A rejected message may still be streaming in: free what was stored.
      if (bdat->bare_newline() && !content.empty()) content = std::string();
    }
    input_pos += take;
    chunk_remaining -= take;
    if (chunk_remaining > 0) return false;
    phase = Phase::kCommand;
    if (!chunk_reject.empty()) {
      // RFC 3030 3: after a failed chunk the transaction is over; further
      // pipelined chunks are consumed and answered 503 (no MAIL).
      if (chunk_reject_reason == "too_large") ResetTransaction();
      Reject(out, chunk_reject, chunk_reject_reason);
      return true;
    }
    if (!chunk_last) {
      Reply(out, absl::StrCat("250 2.0.0 ", chunk_size, " octets received"));
      return true;
    }
    if (bdat->Finish(&content)) {
      phase = Phase::kSpoolReady;
      return true;
    }
    ResetTransaction();
    Reject(out, "550 5.6.11 Bare CR or LF not allowed", "bare_lf");
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
    CountCommand(parsed.ok() ? parsed->verb : CommandVerb::kUnknown);
    if (!parsed.ok()) {
      // The parser's message is the reply line (see smtp_command.h).
      const absl::string_view reply = parsed.status().message();
      Reject(out, Std(reply),
             parsed.status().code() == absl::StatusCode::kUnimplemented ? "unknown_command"
                                                                        : "syntax");
      return;
    }
    SmtpCommand& cmd = *parsed;
    switch (cmd.verb) {
      // BDAT too, but only once its octets are consumed (HandleBdat).
      case Verb::kMail:
      case Verb::kRcpt:
      case Verb::kData:
        if (TlsRequiredNow()) {
          return Reject(out, "530 5.7.0 Must issue a STARTTLS command first", "tls_required");
        }
        break;
      default:
        break;
    }
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
      case Verb::kBdat:
        return HandleBdat(cmd.argument, out);
      case Verb::kRset:
        ResetTransaction();
        return Reply(out, "250 2.0.0 Ok");
      case Verb::kNoop:
        return Reply(out, "250 2.0.0 Ok");
      case Verb::kQuit:
        return Close(out, "221 2.0.0 Bye");
      case Verb::kHelp:
        return Reply(out,
                     "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
      case Verb::kVrfy:
        // RFC 5321 3.5.3: 252 when we will not verify but will try delivery.
        return Reply(out,
                     "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
      case Verb::kStarttls:
        return HandleStartTls(out);
      case Verb::kAuth:
        HandleAuth(cmd.argument, out);
        Wipe(&cmd.argument);
        return;
      case Verb::kExpn:
        return Reject(out, "502 5.5.1 Command not implemented", "not_implemented");
      case Verb::kUnknown:  // the parser reports unknown verbs as errors
        break;
    }
    Reject(out, "500 5.5.2 Error: command not recognized", "unknown_command");
  }

  void HandleStartTls(std::string* out) {
    if (context.tls_mode == SessionContext::TlsMode::kNone) {
      return Reject(out, "502 5.5.1 Command not implemented", "not_implemented");
    }
    // Covers implicit TLS too. 554 rather than 503: repeating the command
    // later in the session cannot succeed either (Postfix answers the same).
    if (tls_active) return Reject(out, "554 5.5.1 Error: TLS already active", "bad_sequence");
    if (context.tls_mode == SessionContext::TlsMode::kImplicit) {
      // Only reachable if the glue skipped TlsStarted(): never offered.
      return Reject(out, "502 5.5.1 Command not implemented", "not_implemented");
    }
    Reply(out, "220 2.0.0 Ready to start TLS");
    // Whatever the client pipelined behind STARTTLS arrived in plaintext and
    // must never be read as if it came through TLS (CVE-2011-0411).
    discarded_after_starttls += input.size() - input_pos;
    input_pos = input.size();
    discarding_line = false;
    phase = Phase::kStartTls;
  }

  void HandleAuth(std::string_view argument, std::string* out) {
    if (!context.auth_enabled) {
      if (TlsRequiredNow()) {
        return Reject(out, "530 5.7.0 Must issue a STARTTLS command first", "tls_required");
      }
      return Reject(out, "502 5.5.1 Command not implemented", "not_implemented");
    }
    // The documented answer for AUTH before TLS, also on listeners that require
    // TLS for everything: it names the actual problem.
    if (!tls_active) {
      return Reject(out, "538 5.7.11 Encryption required for requested authentication mechanism",
                    "auth_required_tls");
    }
    if (!esmtp) return Reject(out, "503 5.5.1 Error: send EHLO first", "bad_sequence");
    if (authenticated) return Reject(out, "503 5.5.1 Error: already authenticated", "bad_sequence");
    if (in_mail) {
      return Reject(out, "503 5.5.1 Error: MAIL transaction in progress", "bad_sequence");
    }
    const size_t space = argument.find(' ');
    const std::string_view mechanism = argument.substr(0, space);
    std::string_view initial;
    bool has_initial = false;
    if (space != std::string_view::npos) {
      initial = argument.substr(space + 1);
      while (!initial.empty() && initial.front() == ' ') initial.remove_prefix(1);
      has_initial = true;
    }
    if (mechanism.empty() || initial.find(' ') != std::string_view::npos) {
      return Reject(out, "501 5.5.4 Syntax: AUTH mechanism [initial-response]", "syntax");
    }
    // RFC 4954 4: "=" is an initial response of zero length.
    if (initial == "=") initial = std::string_view();
    if (absl::EqualsIgnoreCase(Absl(mechanism), "PLAIN")) {
      if (!has_initial) {
        sasl = Sasl::kPlain;
        return Reply(out, "334 ");
      }
      return PlainResponse(initial, out);
    }
    if (absl::EqualsIgnoreCase(Absl(mechanism), "LOGIN")) {
      // Some clients send the user name with the command (draft-murchison-
      // sasl-login); otherwise ask for it.
      if (!has_initial) {
        sasl = Sasl::kLoginUser;
        return Reply(out, "334 VXNlcm5hbWU6");
      }
      sasl = Sasl::kLoginUser;
      return HandleSaslResponse(initial, out);
    }
    Reject(out, "504 5.5.4 Unrecognized authentication type", "auth_mechanism");
  }

  // One client line inside an AUTH exchange (or a LOGIN/PLAIN initial
  // response).
  void HandleSaslResponse(std::string_view line, std::string* out) {
    if (line == "*") {
      ForgetAuthExchange();
      return Reject(out, "501 5.7.0 Authentication aborted", "auth_aborted");
    }
    switch (sasl) {
      case Sasl::kPlain:
        sasl = Sasl::kNone;
        return PlainResponse(line, out);
      case Sasl::kLoginUser:
        if (!DecodeBase64(line, &auth.username)) break;
        sasl = Sasl::kLoginPassword;
        return Reply(out, "334 UGFzc3dvcmQ6");
      case Sasl::kLoginPassword:
        if (!DecodeBase64(line, &auth.password)) break;
        sasl = Sasl::kNone;
        return CredentialsComplete(/*authorization_id=*/{}, out);
      case Sasl::kNone:
        assert(false);
        return;
    }
    ForgetAuthExchange();
    Reject(out, "501 5.5.2 Cannot decode response", "syntax");
  }

  // RFC 4616: [authzid] NUL authcid NUL passwd.
  void PlainResponse(std::string_view encoded, std::string* out) {
    sasl = Sasl::kNone;
    std::string decoded;
    const bool ok = DecodeBase64(encoded, &decoded);
    const size_t first = decoded.find('\0');
    const size_t second = first == std::string::npos ? first : decoded.find('\0', first + 1);
    if (!ok || second == std::string::npos || decoded.find('\0', second + 1) != std::string::npos) {
      Wipe(&decoded);
      ForgetAuthExchange();
      return Reject(out, "501 5.5.2 Cannot decode response", "syntax");
    }
    const std::string authorization_id = decoded.substr(0, first);
    auth.username = decoded.substr(first + 1, second - first - 1);
    auth.password = decoded.substr(second + 1);
    Wipe(&decoded);
    CredentialsComplete(authorization_id, out);
  }

  void CredentialsComplete(std::string_view authorization_id, std::string* out) {
    // Acting for another identity (an authzid naming someone else) is not
    // supported; empty fields can never verify. Refused here, without
    // spending a password check on them.
    if ((!authorization_id.empty() && authorization_id != auth.username) || auth.username.empty() ||
        auth.password.empty()) {
      ForgetAuthExchange();
      return Reject(out, "535 5.7.8 Authentication credentials invalid", "auth_failed");
    }
    phase = Phase::kAuthReady;
  }

  void HandleHelo(const SmtpCommand& cmd, std::string* out) {
    // RFC 5321 4.1.4: a repeated EHLO/HELO resets the transaction like RSET.
    ResetTransaction();
    helo = cmd.argument;
    esmtp = cmd.verb == Verb::kEhlo;
    if (!esmtp) return Reply(out, absl::StrCat("250 ", context.hostname));
    // The extensions offered. BINARYMIME is not: content is relayed as is,
    // and binary content could not go on to a next hop without CHUNKING.
    std::vector<std::string> keywords = {
        "PIPELINING", absl::StrCat("SIZE ", context.limits.max_message_size),
        "8BITMIME",   "SMTPUTF8",
        "CHUNKING",   "DSN",
    };
    if (!tls_active && (context.tls_mode == SessionContext::TlsMode::kOffer ||
                        context.tls_mode == SessionContext::TlsMode::kRequire)) {
      keywords.push_back("STARTTLS");
    }
    // Only inside TLS: offering AUTH in plaintext invites clients to send
    // passwords in the clear.
    if (AuthOffered()) keywords.push_back("AUTH PLAIN LOGIN");
    keywords.push_back("ENHANCEDSTATUSCODES");
    Reply(out, absl::StrCat("250-", context.hostname));
    for (size_t i = 0; i < keywords.size(); ++i) {
      Reply(out, absl::StrCat(i + 1 < keywords.size() ? "250-" : "250 ", keywords[i]));
    }
  }

  void HandleMail(const SmtpCommand& cmd, std::string* out) {
    if (helo.empty()) return Reject(out, "503 5.5.1 Error: send HELO/EHLO first", "bad_sequence");
    if (in_mail) return Reject(out, "503 5.5.1 Error: nested MAIL command", "bad_sequence");
    bool utf8 = false;
    bool eight_bit = false;
    uint64_t declared_size = 0;
    std::string ret;
    const std::string* envid = nullptr;
    for (const auto& [key, value] : cmd.parameters) {
      if (key == "SIZE") {
        if (!ParseSizeValue(value, &declared_size)) {
          return Reject(out, "501 5.5.4 Bad SIZE parameter syntax", "syntax");
        }
      } else if (key == "BODY") {
        if (absl::EqualsIgnoreCase(value, "8BITMIME")) {
          eight_bit = true;
        } else if (absl::EqualsIgnoreCase(value, "BINARYMIME")) {
          // RFC 3030 3: known, but not offered.
          return Reject(out, "555 5.5.4 Unsupported option: BODY=BINARYMIME",
                        "unsupported_parameter");
        } else if (!absl::EqualsIgnoreCase(value, "7BIT")) {
          return Reject(out, "501 5.5.4 Bad BODY parameter syntax", "syntax");
        }
      } else if (key == "SMTPUTF8") {
        if (!value.empty()) return Reject(out, "501 5.5.4 Bad SMTPUTF8 parameter syntax", "syntax");
        utf8 = true;
      } else if (key == "AUTH" && AuthOffered()) {
        // RFC 4954 5: the identity a relaying client vouches for. We do not
        // trust it from anyone and relay nothing onwards, so it is ignored.
        if (value.empty()) return Reject(out, "501 5.5.4 Bad AUTH parameter syntax", "syntax");
      } else if (key == "RET") {
        if (absl::EqualsIgnoreCase(value, "FULL")) {
          ret = "FULL";
        } else if (absl::EqualsIgnoreCase(value, "HDRS")) {
          ret = "HDRS";
        } else {
          return Reject(out, "501 5.5.4 Bad RET parameter syntax", "syntax");
        }
      } else if (key == "ENVID") {
        envid = &value;  // checked below: SMTPUTF8 may come later on the line
      } else {
        // The keyword is alphanumeric (checked by the parser), so echoing it
        // is safe.
        return Reject(out, absl::StrCat("555 5.5.4 Unsupported option: ", key),
                      "unsupported_parameter");
      }
    }
    if (envid != nullptr &&
        (envid->empty() || envid->size() > kMaxEnvidLength || !IsXtext(*envid, utf8))) {
      return Reject(out, "501 5.5.4 Bad ENVID parameter syntax", "syntax");
    }
    if (declared_size > context.limits.max_message_size) {
      return Reject(out, "552 5.3.4 Message size exceeds fixed limit", "too_large");
    }
    if (!utf8 && HasNonAscii(cmd.path)) {
      return Reject(out, "553 5.6.7 Must declare SMTPUTF8 to send unicode address",
                    "smtputf8_required");
    }
    const std::string_view domain = MailboxDomain(cmd.path);
    if (const PartnerRule* partner =
            context.inbound == nullptr ? nullptr : context.inbound->Match(domain)) {
      // Pins imply TLS: without it there is no certificate to check.
      if ((partner->require_tls || !partner->pins.empty()) && !tls_active) {
        return Reject(out, "530 5.7.0 Must issue a STARTTLS command first", "tls_required");
      }
      if (!partner->pins.empty()) {
        // The domain matched a configured (ASCII) partner and passed the
        // address parser, so it is safe to echo.
        if (tls.peer_cert_sha256.empty() && tls.peer_spki_sha256.empty()) {
          return Reject(out,
                        absl::StrCat("530 5.7.0 Client certificate required for ", Absl(domain)),
                        "client_cert_required");
        }
        if (!partner->AcceptsCertificate(tls.peer_cert_sha256, tls.peer_spki_sha256)) {
          return Reject(
              out, absl::StrCat("550 5.7.1 Client certificate not authorised for ", Absl(domain)),
              "client_cert_rejected");
        }
      }
    }
    // The null sender (bounces, vacation replies) names no owner, so it is
    // not checked.
    if (context.sender_login_match && authenticated && !domain.empty() &&
        std::none_of(user_domains.begin(), user_domains.end(),
                     [&](const std::string& d) { return DomainMatches(d, domain); })) {
      return Reject(out, "553 5.7.1 Sender address rejected: not owned by user",
                    "sender_not_owned");
    }
    in_mail = true;
    sender = cmd.path;
    smtputf8 = utf8;
    eight_bit_mime = eight_bit;
    dsn_ret = std::move(ret);
    dsn_envid = envid == nullptr ? std::string() : *envid;
    Reply(out, "250 2.1.0 Ok");
  }

  void HandleRcpt(const SmtpCommand& cmd, std::string* out) {
    if (!in_mail) return Reject(out, "503 5.5.1 Error: need MAIL command", "bad_sequence");
    // The message has begun: who it is for can no longer change.
    if (bdat) return Reject(out, "503 5.5.1 Error: RCPT after BDAT", "bad_sequence");
    RecipientDsn dsn;
    for (const auto& [key, value] : cmd.parameters) {
      if (key == "NOTIFY") {
        dsn.notify = CanonicalNotify(value);
        if (dsn.notify.empty())
          return Reject(out, "501 5.5.4 Bad NOTIFY parameter syntax", "syntax");
      } else if (key == "ORCPT") {
        if (!IsValidOrcpt(value, smtputf8)) {
          return Reject(out, "501 5.5.4 Bad ORCPT parameter syntax", "syntax");
        }
        dsn.orcpt = value;
      } else {
        return Reject(out, absl::StrCat("555 5.5.4 Unsupported option: ", key),
                      "unsupported_parameter");
      }
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
    if (!tls_active && context.inbound != nullptr &&
        context.inbound->RecipientRequiresTls(MailboxDomain(cmd.path))) {
      return Reject(out, "530 5.7.0 Must issue a STARTTLS command first", "tls_required");
    }
    recipients.push_back(cmd.path);
    dsn.address = cmd.path;
    recipient_dsn.push_back(std::move(dsn));
    Reply(out, "250 2.1.5 Ok");
  }

  void HandleData(std::string* out) {
    if (!in_mail) return Reject(out, "503 5.5.1 Error: need RCPT command", "bad_sequence");
    if (recipients.empty()) return Reject(out, "554 5.5.1 No valid recipients", "bad_sequence");
    if (bdat) return Reject(out, "503 5.5.1 Error: DATA after BDAT", "bad_sequence");
    data_reader.emplace(context.limits.max_message_size, context.limits.max_text_line);
    content.clear();
    phase = Phase::kData;
    Reply(out, "354 End data with <CR><LF>.<CR><LF>");
  }

  // RFC 3030. Whatever the answer, the chunk's octets are consumed first
  // (Phase::kBdat), so they are never read as commands; the reply follows
  // them. Sequence and size problems are known now, at the command, so a
  // refused chunk is discarded as it arrives and never stored.
  void HandleBdat(std::string_view argument, std::string* out) {
    uint64_t size = 0;
    bool last = false;
    if (!ParseBdatArgument(argument, &size, &last)) {
      Reject(out, "501 5.5.4 Syntax: BDAT chunk-size [LAST]", "syntax");
      return LoseBdatSync(out);
    }
    chunk_size = size;
    chunk_remaining = size;
    chunk_last = last;
    chunk_reject = {};
    chunk_reject_reason = {};
    if (TlsRequiredNow()) {
      RejectChunk("530 5.7.0 Must issue a STARTTLS command first", "tls_required");
    } else if (!in_mail) {
      RejectChunk("503 5.5.1 Error: need MAIL command", "bad_sequence");
    } else if (recipients.empty()) {
      RejectChunk("554 5.5.1 No valid recipients", "bad_sequence");
    } else {
      if (!bdat) {
        bdat.emplace(context.limits.max_message_size);
        content = std::string();
      }
      if (!bdat->Fits(size)) {
        RejectChunk("552 5.3.4 Message size exceeds fixed limit", "too_large");
      }
    }
    phase = Phase::kBdat;
  }

  void RejectChunk(std::string_view line, std::string_view reason) {
    chunk_reject = line;
    chunk_reject_reason = reason;
  }

  // RFC 3848 / RFC 6531 3.7.3 protocol names: "S" for TLS, "A" for AUTH.
  // There are no such names for HELO (plain SMTP), which also cannot AUTH.
  std::string Protocol() const {
    if (!esmtp && !smtputf8) return "SMTP";
    std::string protocol = smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (tls_active) protocol += 'S';
    if (authenticated) protocol += 'A';
    return protocol;
  }

  // The login name is deliberately absent: recipients have no business
  // learning it (privacy); the spool's logs are the place to correlate.
  std::string ReceivedHeader(std::string_view queue_id, absl::Time now) const {
    std::string header = absl::StrCat("Received: from ", helo, " ([", context.client_ip, "])\r\n");
    std::string with = Protocol();
    if (tls_active) {
      const std::string cipher = HeaderToken(tls.cipher);
      // The familiar Postfix comment, then the RFC 8314 4.3 "tls" clause.
      absl::StrAppend(&header, "\t(using ", HeaderToken(tls.version), " with cipher ", cipher, " (",
                      tls.bits, "/", tls.alg_bits, " bits))\r\n");
      absl::StrAppend(&with, " tls ", cipher);
    }
    absl::StrAppend(&header, "\tby ", context.hostname, " (Postern) with ", with, " id ",
                    Absl(queue_id));
    // Naming the recipient is only safe when there is one: with several it
    // would disclose the others' addresses to each of them.
    if (recipients.size() == 1) absl::StrAppend(&header, "\r\n\tfor <", recipients[0], ">");
    absl::StrAppend(&header, "; ",
                    absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()),
                    "\r\n");
    return header;
  }
};

SmtpServerSession::SmtpServerSession(SessionContext context)
    : state_(std::make_unique<State>(std::move(context))) {}

SmtpServerSession::~SmtpServerSession() = default;

void SmtpServerSession::Start(std::string* out) {
  Reply(out, absl::StrCat("220 ", state_->context.hostname, " ESMTP Postern"));
}

void SmtpServerSession::Receive(std::string_view bytes) {
  State& s = *state_;
  if (s.phase == State::Phase::kClosed) return;
  if (s.phase == State::Phase::kStartTls) {
    // Plaintext after STARTTLS that the glue still handed over: dropped.
    s.discarded_after_starttls += bytes.size();
    return;
  }
  s.input.append(bytes);
}

SmtpServerSession::Event SmtpServerSession::Process(std::string* out) {
  const Event event = state_->Run(out);
  state_->Compact();
  return event;
}

AcceptedMessage SmtpServerSession::TakeMessage(std::string_view queue_id, absl::Time now) {
  State& s = *state_;
  assert(s.phase == State::Phase::kSpoolReady);
  AcceptedMessage message;
  if (s.phase != State::Phase::kSpoolReady) return message;
  message.sender = s.sender;
  message.recipients = s.recipients;
  message.helo = s.helo;
  message.smtputf8 = s.smtputf8;
  message.eight_bit_mime = s.eight_bit_mime;
  message.dsn_ret = s.dsn_ret;
  message.dsn_envid = s.dsn_envid;
  message.recipient_dsn = std::move(s.recipient_dsn);
  s.recipient_dsn.clear();
  // Prepend in place: at worst one copy of the content, as with a fresh string.
  s.content.insert(0, s.ReceivedHeader(queue_id, now));
  message.body = std::move(s.content);
  s.content = std::string();
  s.phase = State::Phase::kWaitSpool;
  return message;
}

void SmtpServerSession::SpoolDone(const absl::Status& status, std::string_view queue_id,
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

void SmtpServerSession::TlsStarted(const TlsFacts& facts) {
  State& s = *state_;
  const bool implicit_start = s.phase == State::Phase::kCommand &&
                              s.context.tls_mode == SessionContext::TlsMode::kImplicit &&
                              !s.tls_active && s.commands == 0 && s.input.empty();
  assert(s.phase == State::Phase::kStartTls || implicit_start);
  if (s.phase != State::Phase::kStartTls && !implicit_start) return;
  // RFC 3207 4.2: discard all knowledge obtained from the client before TLS.
  s.ResetTransaction();
  s.ForgetAuthExchange();
  s.helo.clear();
  s.esmtp = false;
  s.authenticated = false;
  s.user_domains.clear();
  s.input.clear();
  s.input_pos = 0;
  s.discarding_line = false;
  s.tls_active = true;
  s.tls = facts;
  s.phase = State::Phase::kCommand;
}

AuthRequest SmtpServerSession::TakeAuthRequest() {
  State& s = *state_;
  if (s.phase != State::Phase::kAuthReady) return AuthRequest();
  AuthRequest request = std::move(s.auth);
  s.ForgetAuthExchange();  // whatever a move left behind
  s.phase = State::Phase::kWaitAuth;
  return request;
}

void SmtpServerSession::AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains,
                                 std::string* out) {
  State& s = *state_;
  if (s.phase != State::Phase::kWaitAuth) return;  // closed meanwhile (timeout, shutdown)
  s.phase = State::Phase::kCommand;
  switch (outcome) {
    case AuthOutcome::kOk:
      s.authenticated = true;
      s.user_domains = std::move(user_domains);
      Reply(out, "235 2.7.0 Authentication successful");
      return;
    case AuthOutcome::kBad:
      s.Reject(out, "535 5.7.8 Authentication credentials invalid", "auth_failed");
      return;
    case AuthOutcome::kThrottled:
      s.Reject(out, "454 4.7.0 Too many failed authentication attempts, try later",
               "auth_throttled");
      return;
    case AuthOutcome::kTempFail:
      // Our problem, not the client's: not counted towards max_errors.
      s.Reject(out, "454 4.7.0 Temporary authentication failure", "auth_unavailable",
               /*counts_as_error=*/false);
      return;
  }
}

void SmtpServerSession::Timeout(std::string* out) {
  if (state_->phase == State::Phase::kClosed) return;
  if (state_->phase == State::Phase::kStartTls) {
    // Mid-handshake there is no channel a reply could go on.
    state_->phase = State::Phase::kClosed;
    return;
  }
  state_->Close(out,
                absl::StrCat("421 4.4.2 ", state_->context.hostname, " Error: timeout exceeded"));
}

void SmtpServerSession::Shutdown(std::string* out) {
  if (state_->phase == State::Phase::kClosed) return;
  if (state_->phase == State::Phase::kStartTls) {
    state_->phase = State::Phase::kClosed;
    return;
  }
  state_->Close(out,
                absl::StrCat("421 4.3.2 ", state_->context.hostname, " Service shutting down"));
}

SmtpServerSession::Phase SmtpServerSession::phase() const {
  return state_->phase == State::Phase::kData || state_->phase == State::Phase::kBdat
             ? Phase::kData
             : Phase::kCommand;
}

uint64_t SmtpServerSession::commands() const { return state_->commands; }

std::array<uint64_t, kCommandVerbCount> SmtpServerSession::TakeCommandCounts() {
  return std::exchange(state_->command_counts, {});
}

uint64_t SmtpServerSession::messages_accepted() const { return state_->messages_accepted; }

uint64_t SmtpServerSession::discarded_after_starttls() const {
  return state_->discarded_after_starttls;
}

bool SmtpServerSession::tls_active() const { return state_->tls_active; }

bool SmtpServerSession::authenticated() const { return state_->authenticated; }

size_t SmtpServerSession::buffered_bytes() const {
  return state_->input.size() - state_->input_pos;
}

std::vector<std::string> SmtpServerSession::TakeRejections() {
  return std::exchange(state_->rejections, {});
}

}  // namespace postern::engine
