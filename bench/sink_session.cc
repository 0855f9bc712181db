#include "bench/sink_session.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/absl_compat.h"
#include "common/json_string.h"
#include "engine/smtp/smtp_command.h"

namespace postern::bench {
namespace {

using engine::SmtpCommand;
using Verb = SmtpCommand::Verb;

constexpr std::string_view kDefaultMailReply = "250 2.1.0 Ok";
constexpr std::string_view kDefaultRcptReply = "250 2.1.5 Ok";
constexpr std::string_view kDefaultDataReply = "250 2.0.0 Ok: queued";

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A reply line accepts when its code is 2xx.
bool Accepts(std::string_view line) { return !line.empty() && line[0] == '2'; }

// "BDAT" chunk-size [ SP "LAST" ] (RFC 3030 2). A size too large for uint64_t
// saturates: the octets are consumed as they come, never allocated.
bool ParseBdatArgument(std::string_view argument, uint64_t* size, bool* last) {
  const size_t space = argument.find(' ');
  const std::string_view digits = argument.substr(0, space);
  if (!IsDigits(digits)) return false;
  if (!absl::SimpleAtoi(Absl(digits), size)) *size = std::numeric_limits<uint64_t>::max();
  *last = false;
  if (space == std::string_view::npos) return true;
  std::string_view rest = argument.substr(space);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  *last = absl::EqualsIgnoreCase(Absl(rest), "LAST");
  return *last;
}

void AppendParams(const EsmtpParams& params, std::string* out) {
  out->push_back('{');
  for (size_t i = 0; i < params.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(params[i].first, out);
    out->push_back(':');
    AppendJsonString(params[i].second, out);
  }
  out->push_back('}');
}

}  // namespace

absl::Status ValidateReplyLine(std::string_view line) {
  if (line.size() < 3 || !IsDigits(line.substr(0, 3)) || line[0] < '2' || line[0] > '5') {
    return absl::InvalidArgumentError("a reply must start with a code 200-599");
  }
  if (line.size() > 3 && line[3] != ' ') {
    return absl::InvalidArgumentError("a reply is \"CODE TEXT\" (a space after the code)");
  }
  for (char c : line) {
    if (c == '\r' || c == '\n') return absl::InvalidArgumentError("a reply is one line");
  }
  return absl::OkStatus();
}

std::string SinkMessageJson(const SinkMessage& m) {
  std::string out = "{\"helo\":";
  AppendJsonString(m.helo, &out);
  absl::StrAppend(&out, ",\"esmtp\":", m.esmtp ? "true" : "false", ",\"mail_from\":");
  AppendJsonString(m.mail_from, &out);
  out.append(",\"mail_params\":");
  AppendParams(m.mail_params, &out);
  out.append(",\"rcpt\":[");
  for (size_t i = 0; i < m.rcpt.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(m.rcpt[i], &out);
  }
  out.append("],\"rcpt_params\":[");
  for (size_t i = 0; i < m.rcpt_params.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendParams(m.rcpt_params[i], &out);
  }
  absl::StrAppend(&out, "],\"transfer\":\"", m.bdat ? "BDAT" : "DATA", "\",\"size\":", m.size,
                  ",\"sha256\":\"", m.sha256_hex, "\",\"tls\":");
  if (!m.tls.has_value()) {
    out.append("null");
  } else {
    out.append("{\"version\":");
    AppendJsonString(m.tls->version, &out);
    out.append(",\"cipher\":");
    AppendJsonString(m.tls->cipher, &out);
    out.append(",\"sni\":");
    if (m.tls->sni.empty()) {
      out.append("null");
    } else {
      AppendJsonString(m.tls->sni, &out);
    }
    out.push_back('}');
  }
  if (!m.content.empty()) {
    out.append(",\"content\":");
    AppendJsonString(m.content, &out);
  }
  out.push_back('}');
  return out;
}

SinkSession::SinkSession(const SinkOptions* options) : options_(options) {}

void SinkSession::Start(std::string* out) {
  const std::string greeting = options_->greeting.empty()
                                   ? absl::StrCat("220 ", options_->hostname, " ESMTP postern-sink")
                                   : options_->greeting;
  if (absl::StartsWith(greeting, "421")) {
    Close(out, greeting);
  } else {
    greeting_refused_ = !Accepts(greeting);
    Reply(out, greeting);
  }
}

void SinkSession::Receive(std::string_view bytes) {
  if (phase_ == Phase::kStartTls || phase_ == Phase::kClosed) return;
  input_.append(bytes);
}

std::string_view SinkSession::Pending() const {
  return std::string_view(input_).substr(input_pos_);
}

void SinkSession::Compact() {
  if (input_pos_ == input_.size()) {
    input_.clear();
    input_pos_ = 0;
  } else if (input_pos_ > 0) {
    input_.erase(0, input_pos_);
    input_pos_ = 0;
  }
}

SinkSession::Event SinkSession::Process(std::string* out) {
  while (true) {
    switch (phase_) {
      case Phase::kClosed:
        return Event::kClose;
      case Phase::kStartTls:
        return Event::kStartTls;
      case Phase::kMessage:
        phase_ = Phase::kMessageWait;
        return Event::kMessage;
      case Phase::kMessageWait:
        return Event::kWaitMessage;
      case Phase::kData:
        if (!StepData()) {
          Compact();
          return Event::kNeedInput;
        }
        break;
      case Phase::kBdat:
        if (!StepBdat(out)) {
          Compact();
          return Event::kNeedInput;
        }
        break;
      case Phase::kCommand: {
        const std::string_view pending = Pending();
        const size_t lf = pending.find('\n');
        if (lf == std::string_view::npos) {
          if (pending.size() >= options_->max_line) {
            // Drop the line as it comes; answered once its end arrives.
            skipping_long_line_ = true;
            input_pos_ = input_.size();
          }
          Compact();
          return Event::kNeedInput;
        }
        std::string_view line = pending.substr(0, lf);
        input_pos_ += lf + 1;
        if (skipping_long_line_ || line.size() + 1 > options_->max_line) {
          skipping_long_line_ = false;
          Reply(out, "500 5.5.2 Error: line too long");
          break;
        }
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        HandleLine(line, out);
        break;
      }
    }
  }
}

void SinkSession::HandleLine(std::string_view line, std::string* out) {
  // Parsing copies what it keeps, so `line` (a view into input_) is not used
  // once a handler may have touched the input.
  absl::StatusOr<SmtpCommand> parsed = engine::ParseSmtpCommand(line);
  if (!parsed.ok()) {
    const absl::string_view reply = parsed.status().message();
    Reply(out, Std(reply));
    return;
  }
  SmtpCommand& cmd = *parsed;
  if (cmd.verb == Verb::kBdat) {
    HandleBdat(cmd.argument, out);  // its octets follow whatever the answer
    return;
  }
  if (greeting_refused_ && cmd.verb != Verb::kQuit) {
    Reply(out, "503 5.5.1 Error: no SMTP service here");
    return;
  }
  switch (cmd.verb) {
    case Verb::kEhlo:
      return HandleEhlo(cmd.argument, /*ehlo=*/true, out);
    case Verb::kHelo:
      return HandleEhlo(cmd.argument, /*ehlo=*/false, out);
    case Verb::kMail:
      return HandleMail(std::move(cmd.path), std::move(cmd.parameters), out);
    case Verb::kRcpt:
      return HandleRcpt(std::move(cmd.path), std::move(cmd.parameters), out);
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
      return Reply(out, "214 2.0.0 postern-sink: a benchmark and test receiver");
    case Verb::kVrfy:
      return Reply(out, "252 2.5.0 Cannot VRFY user");
    case Verb::kStarttls:
      return HandleStartTls(out);
    default:
      return Reply(out, "502 5.5.1 Error: command not implemented");
  }
}

void SinkSession::HandleEhlo(std::string_view name, bool ehlo, std::string* out) {
  if (ehlo && !options_->ehlo) {
    Reply(out, "502 5.5.1 Error: EHLO not supported, use HELO");
    return;
  }
  ResetTransaction();
  helo_ = std::string(name);
  esmtp_ = ehlo;
  if (!ehlo) {
    Reply(out, absl::StrCat("250 ", options_->hostname));
    return;
  }
  std::vector<std::string_view> lines = {options_->hostname};
  if (options_->pipelining) lines.push_back("PIPELINING");
  lines.push_back("SIZE");
  if (options_->eight_bit_mime) lines.push_back("8BITMIME");
  if (options_->smtputf8) lines.push_back("SMTPUTF8");
  if (options_->chunking) lines.push_back("CHUNKING");
  if (options_->dsn) lines.push_back("DSN");
  lines.push_back("ENHANCEDSTATUSCODES");
  if (options_->starttls && !tls_.has_value()) lines.push_back("STARTTLS");
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StrAppend(out, i + 1 < lines.size() ? "250-" : "250 ", Absl(lines[i]), "\r\n");
  }
}

std::string SinkSession::CheckParams(const EsmtpParams& params, bool mail, bool smtputf8) const {
  std::set<std::string> seen;
  for (const auto& [keyword, value] : params) {
    if (!seen.insert(keyword).second) return "501 5.5.4 Error: duplicate parameter " + keyword;
    const std::string upper = absl::AsciiStrToUpper(Absl(value));
    bool ok = false;
    if (!esmtp_) {
      ok = false;  // parameters are ESMTP (RFC 5321 4.1.1.11)
    } else if (mail && keyword == "SIZE") {
      if (!IsDigits(value)) return "501 5.5.4 Error: bad SIZE value";
      ok = true;
    } else if (mail && keyword == "BODY") {
      ok = upper == "7BIT" || (upper == "8BITMIME" && options_->eight_bit_mime);
    } else if (mail && keyword == "SMTPUTF8") {
      ok = options_->smtputf8 && value.empty();
    } else if (mail && keyword == "RET") {
      ok = options_->dsn && (upper == "FULL" || upper == "HDRS");
    } else if (mail && keyword == "ENVID") {
      ok = options_->dsn && engine::IsXtext(value, smtputf8) && !value.empty();
    } else if (!mail && keyword == "NOTIFY") {
      ok = options_->dsn && !engine::CanonicalNotify(value).empty();
    } else if (!mail && keyword == "ORCPT") {
      ok = options_->dsn && engine::IsValidOrcpt(value, smtputf8);
    }
    if (!ok) return "555 5.5.4 Error: unsupported parameter " + keyword;
  }
  return "";
}

void SinkSession::HandleMail(std::string path, EsmtpParams params, std::string* out) {
  if (draining_) return Close(out, "421 4.3.2 Service shutting down");
  if (helo_.empty()) return Reply(out, "503 5.5.1 Error: send HELO/EHLO first");
  if (in_mail_) return Reply(out, "503 5.5.1 Error: nested MAIL command");
  bool smtputf8 = false;
  for (const auto& param : params) smtputf8 = smtputf8 || param.first == "SMTPUTF8";
  if (std::string refusal = CheckParams(params, /*mail=*/true, smtputf8); !refusal.empty()) {
    return Reply(out, refusal);
  }
  if (engine::HasNonAscii(path) && !smtputf8) {
    return Reply(out, "553 5.6.7 Error: address needs SMTPUTF8");
  }
  const std::string_view reply =
      options_->reply_mail.empty() ? kDefaultMailReply : std::string_view(options_->reply_mail);
  if (!Accepts(reply)) return Reply(out, reply);
  ResetTransaction();
  in_mail_ = true;
  smtputf8_ = smtputf8;
  message_.helo = helo_;
  message_.esmtp = esmtp_;
  message_.mail_from = std::move(path);
  message_.mail_params = std::move(params);
  message_.tls = tls_;
  Reply(out, reply);
}

void SinkSession::HandleRcpt(std::string path, EsmtpParams params, std::string* out) {
  if (!in_mail_) return Reply(out, "503 5.5.1 Error: need MAIL command");
  if (bdat_started_) return Reply(out, "503 5.5.1 Error: RCPT after BDAT");
  if (std::string refusal = CheckParams(params, /*mail=*/false, smtputf8_); !refusal.empty()) {
    return Reply(out, refusal);
  }
  if (engine::HasNonAscii(path) && !smtputf8_) {
    return Reply(out, "553 5.6.7 Error: address needs SMTPUTF8");
  }
  std::string_view reply = kDefaultRcptReply;
  if (!options_->reply_rcpt.empty() &&
      (options_->reject_rcpt.empty() || absl::StrContains(path, options_->reject_rcpt))) {
    reply = options_->reply_rcpt;
  }
  if (Accepts(reply)) {
    message_.rcpt.push_back(std::move(path));
    message_.rcpt_params.push_back(std::move(params));
  }
  Reply(out, reply);
}

void SinkSession::HandleData(std::string* out) {
  if (!in_mail_) return Reply(out, "503 5.5.1 Error: need MAIL command");
  if (bdat_started_) return Reply(out, "503 5.5.1 Error: DATA after BDAT");
  if (message_.rcpt.empty()) return Reply(out, "554 5.5.1 Error: no valid recipients");
  // No size or line limits: the sink measures, it does not police.
  data_reader_.emplace(std::numeric_limits<size_t>::max(), std::numeric_limits<size_t>::max());
  SHA256_Init(&sha_);
  content_size_ = 0;
  message_.bdat = false;
  phase_ = Phase::kData;
  Reply(out, "354 End data with <CR><LF>.<CR><LF>");
}

bool SinkSession::StepData() {
  input_pos_ += data_reader_->Feed(Pending(), &scratch_);
  SHA256_Update(&sha_, scratch_.data(), scratch_.size());
  content_size_ += scratch_.size();
  if (options_->keep_content) message_.content.append(scratch_);
  scratch_.clear();
  if (!data_reader_->done()) return false;
  EndContent(data_reader_->result() == engine::DataReader::Result::kOk);
  return true;
}

void SinkSession::HandleBdat(std::string_view argument, std::string* out) {
  uint64_t size = 0;
  bool last = false;
  if (!ParseBdatArgument(argument, &size, &last)) {
    // Where the chunk ends is unknown: nothing after it can be read safely.
    Reply(out, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
    return Close(out, "421 4.5.0 Error: BDAT stream out of sync");
  }
  chunk_size_ = size;
  chunk_remaining_ = size;
  chunk_last_ = last;
  chunk_reject_.clear();
  if (greeting_refused_) {
    chunk_reject_ = "503 5.5.1 Error: no SMTP service here";
  } else if (!options_->chunking || !esmtp_) {
    chunk_reject_ = "502 5.5.1 Error: BDAT not offered";
  } else if (!in_mail_) {
    chunk_reject_ = "503 5.5.1 Error: need MAIL command";
  } else if (message_.rcpt.empty()) {
    chunk_reject_ = "554 5.5.1 Error: no valid recipients";
  } else if (!bdat_started_) {
    bdat_started_ = true;
    SHA256_Init(&sha_);
    content_size_ = 0;
    message_.bdat = true;
  }
  phase_ = Phase::kBdat;
}

bool SinkSession::StepBdat(std::string* out) {
  const std::string_view pending = Pending();
  const size_t take = static_cast<size_t>(std::min<uint64_t>(chunk_remaining_, pending.size()));
  if (chunk_reject_.empty()) {
    SHA256_Update(&sha_, pending.data(), take);
    content_size_ += take;
    if (options_->keep_content) message_.content.append(pending.data(), take);
  }
  input_pos_ += take;
  chunk_remaining_ -= take;
  if (chunk_remaining_ > 0) return false;
  phase_ = Phase::kCommand;
  if (!chunk_reject_.empty()) {
    Reply(out, chunk_reject_);
  } else if (!chunk_last_) {
    Reply(out, absl::StrCat("250 2.0.0 ", chunk_size_, " octets received"));
  } else {
    EndContent(/*clean=*/true);
  }
  return true;
}

void SinkSession::EndContent(bool clean) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, &sha_);
  static constexpr char kHex[] = "0123456789abcdef";
  message_.sha256_hex.clear();
  for (uint8_t b : digest) {
    message_.sha256_hex.push_back(kHex[b >> 4]);
    message_.sha256_hex.push_back(kHex[b & 0xF]);
  }
  message_.size = content_size_;
  if (!clean) {
    end_reply_ = "550 5.6.11 Error: bare CR or LF in message content";
  } else {
    end_reply_ =
        options_->reply_data.empty() ? std::string(kDefaultDataReply) : options_->reply_data;
  }
  message_accepted_ = clean && Accepts(end_reply_);
  data_reader_.reset();
  phase_ = Phase::kMessage;
}

void SinkSession::FinishMessage(std::string* out) {
  if (phase_ != Phase::kMessage && phase_ != Phase::kMessageWait) return;
  Reply(out, end_reply_);
  ResetTransaction();
  phase_ = Phase::kCommand;
}

void SinkSession::HandleStartTls(std::string* out) {
  if (!options_->starttls) return Reply(out, "502 5.5.1 Error: command not implemented");
  if (tls_.has_value()) return Reply(out, "503 5.5.1 Error: TLS already active");
  Reply(out, "220 2.0.0 Ready to start TLS");
  // Whatever was pipelined behind STARTTLS is dropped unread.
  input_.clear();
  input_pos_ = 0;
  skipping_long_line_ = false;
  phase_ = Phase::kStartTls;
}

void SinkSession::TlsStarted(SinkTlsInfo info) {
  tls_ = std::move(info);
  helo_.clear();
  esmtp_ = false;
  ResetTransaction();
  input_.clear();
  input_pos_ = 0;
  if (phase_ == Phase::kStartTls) phase_ = Phase::kCommand;
}

void SinkSession::Shutdown(std::string* out) {
  if (phase_ == Phase::kClosed) return;
  Close(out, "421 4.3.2 Service shutting down");
}

void SinkSession::ResetTransaction() {
  in_mail_ = false;
  smtputf8_ = false;
  message_ = SinkMessage{};
  message_accepted_ = false;
  end_reply_.clear();
  data_reader_.reset();
  content_size_ = 0;
  bdat_started_ = false;
}

void SinkSession::Reply(std::string* out, std::string_view line) {
  out->append(line);
  out->append("\r\n");
}

void SinkSession::Close(std::string* out, std::string_view line) {
  Reply(out, line);
  phase_ = Phase::kClosed;
  input_.clear();
  input_pos_ = 0;
}

}  // namespace postern::bench
