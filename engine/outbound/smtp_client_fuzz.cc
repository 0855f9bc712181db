// libFuzzer target for SmtpClientSession: arbitrary server bytes against the
// client. The session must never crash, its output must be well-formed
// commands (DATA content dot-stuffed, BDAT chunks exactly the body), it must
// never send mail commands in plaintext under Tls::kRequired, every message
// it starts must get exactly one consistent result, and all of that must be
// the same however the server's bytes are cut into reads.
//
// Input: byte 0 picks the options (TLS mode, PIPELINING, CHUNKING, chunk
// size, small reply limits), byte 1 the messages to send and, with byte 0,
// the cuts. The rest is what the server sends, in turns separated by 0xFF: a
// turn is sent at once, and the next turn only once the client waits for a
// reply (a server answers what it heard). Within a turn the bytes are cut
// anywhere. When the session is ready or done, the rest of the turn arrives
// before the driver acts, so its decisions never depend on the cuts.
//
// TLS model: at kStartTls the rest of the turn is injected plaintext. A next
// turn starting with 0x16 (a TLS handshake record) is the handshake
// succeeding, and its other bytes come inside TLS; anything else is the
// handshake failing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/outbound/smtp_client_session.h"
#include "engine/smtp/smtp_reply.h"

namespace {

using postern::engine::ConnectionOutcome;
using postern::engine::MessageResult;
using postern::engine::OutboundMessage;
using postern::engine::OutboundRecipient;
using postern::engine::RecipientResult;
using postern::engine::SmtpClientOptions;
using postern::engine::SmtpClientSession;
using Event = SmtpClientSession::Event;
using Tls = SmtpClientOptions::Tls;
using Outcome = RecipientResult::Outcome;

// Not assert(): fuzz builds may define NDEBUG.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

const std::vector<OutboundMessage>& Messages() {
  static const std::vector<OutboundMessage>* messages = [] {
    auto* m = new std::vector<OutboundMessage>(4);
    // DSN parameters, dot lines, a bare LF, no final line break, 8-bit.
    (*m)[0].sender = "alice@a.test";
    (*m)[0].recipients = {{"bob@b.test", "SUCCESS,FAILURE", "rfc822;bob@b.test"},
                          {"carol@b.test", "NEVER", ""}};
    (*m)[0].dsn_ret = "FULL";
    (*m)[0].dsn_envid = "ENV+2B1";
    (*m)[0].body = ".lead\r\nx\n.\r\n..\r\nRSET\r\n\xc3\xa9t\xc3\xa9\r\nend";
    (*m)[0].eight_bit = true;
    // Null sender, empty body.
    (*m)[1].recipients = {{"postmaster", "", ""}};
    // Needs SMTPUTF8.
    (*m)[2].sender = "j\xc3\xb6rg@a.test";
    (*m)[2].recipients = {{"d@b.test", "SUCCESS", ""}};
    (*m)[2].body = "Subject: x\r\n\r\ny\r\n";
    (*m)[2].smtputf8 = true;
    // Larger than a small SIZE, three recipients.
    (*m)[3].sender = "e@a.test";
    (*m)[3].recipients = {{"f@b.test", "", ""}, {"g@b.test", "", ""}, {"h@b.test", "", ""}};
    for (int i = 0; i < 20; ++i) (*m)[3].body += absl::StrCat("line ", i, " .....\r\n");
    return m;
  }();
  return *messages;
}

// The DATA form of a body, written independently of the session's code.
std::string Stuffed(std::string_view body) {
  std::string out;
  std::vector<std::string> lines;
  std::string line;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\r' || body[i] == '\n') {
      if (body[i] == '\r' && i + 1 < body.size() && body[i + 1] == '\n') ++i;
      lines.push_back(line);
      line.clear();
    } else {
      line += body[i];
    }
  }
  if (!line.empty()) lines.push_back(line);
  for (const std::string& l : lines) out += (l.empty() || l[0] != '.' ? "" : ".") + l + "\r\n";
  return out + ".\r\n";
}

bool NeedsUtf8(const OutboundMessage& m) {
  auto non_ascii = [](std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return c & 0x80; });
  };
  if (m.smtputf8 || non_ascii(m.sender)) return true;
  for (const auto& r : m.recipients) {
    if (non_ascii(r.address)) return true;
  }
  return false;
}

bool HasSuccess(std::string_view notify) {
  return notify == "SUCCESS" || notify.rfind("SUCCESS,", 0) == 0 ||
         notify.find(",SUCCESS") != std::string_view::npos;
}

// A message the session put on the wire.
struct Sent {
  const OutboundMessage* message;
  size_t offset;  // where its MAIL starts in the output
  bool dsn;       // the server offered DSN when it started
  bool data_complete = false;
};

// Checks the client's whole output: well-formed commands only, the data of
// each message exactly as it must be, nothing but EHLO right after TLS.
void CheckOutput(std::string_view out, std::vector<Sent>* sent, size_t tls_offset,
                 const SmtpClientOptions& options) {
  size_t pos = 0;
  size_t next_sent = 0;
  Sent* current = nullptr;
  size_t next_rcpt = 0;
  size_t bdat_offset = 0;
  bool after_data = false;
  while (pos < out.size()) {
    const std::string_view rest = out.substr(pos);
    if (after_data) {
      after_data = false;
      const std::string stuffed = Stuffed(current->message->body);
      if (rest.substr(0, stuffed.size()) == stuffed) {
        current->data_complete = true;
        pos += stuffed.size();
        continue;
      }
      if (rest.substr(0, 3) == ".\r\n") {
        pos += 3;
        continue;
      }
    }
    const size_t end = rest.find("\r\n");
    Check(end != std::string_view::npos, "commands end in CRLF");
    const std::string_view line = rest.substr(0, end);
    Check(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos,
          "no bare CR or LF in a command");
    if (pos == tls_offset) Check(line == "EHLO fuzz.test", "EHLO first inside TLS");
    const bool mail_command = line.rfind("MAIL ", 0) == 0 || line.rfind("RCPT ", 0) == 0 ||
                              line == "DATA" || line.rfind("BDAT ", 0) == 0;
    if (mail_command && options.tls == Tls::kRequired) {
      Check(pos >= tls_offset, "no mail commands in plaintext when TLS is required");
    }
    if (line == "STARTTLS") {
      Check(options.tls != Tls::kNever, "no STARTTLS under kNever");
      Check(pos < tls_offset, "no STARTTLS inside TLS");
    }
    pos += end + 2;
    if (line == "EHLO fuzz.test" || line == "HELO fuzz.test" || line == "STARTTLS" ||
        line == "RSET" || line == "QUIT") {
      continue;
    }
    if (line.rfind("MAIL FROM:<", 0) == 0) {
      Check(next_sent < sent->size() && (*sent)[next_sent].offset == pos - end - 2,
            "MAIL only for a started message");
      current = &(*sent)[next_sent++];
      next_rcpt = 0;
      bdat_offset = 0;
      const OutboundMessage& m = *current->message;
      std::string expect = "MAIL FROM:<" + m.sender + ">";
      std::string_view params = line.substr(std::min(line.size(), expect.size()));
      Check(line.substr(0, expect.size()) == expect, "MAIL names the sender");
      Check((params.find(" SMTPUTF8") != std::string_view::npos) == NeedsUtf8(m),
            "SMTPUTF8 exactly when needed");
      Check(current->dsn || (params.find(" RET=") == std::string_view::npos &&
                             params.find(" ENVID=") == std::string_view::npos),
            "DSN parameters on MAIL only when offered");
      Check(m.eight_bit || params.find("BODY=") == std::string_view::npos,
            "BODY=8BITMIME only for 8-bit messages");
      continue;
    }
    if (line.rfind("RCPT TO:<", 0) == 0) {
      Check(current != nullptr && next_rcpt < current->message->recipients.size(),
            "RCPT inside a transaction");
      const OutboundRecipient& r = current->message->recipients[next_rcpt++];
      const std::string expect = "RCPT TO:<" + r.address + ">";
      Check(line.substr(0, expect.size()) == expect, "RCPTs in order");
      const std::string_view params = line.substr(std::min(line.size(), expect.size()));
      Check(current->dsn || (params.find(" NOTIFY=") == std::string_view::npos &&
                             params.find(" ORCPT=") == std::string_view::npos),
            "DSN parameters on RCPT only when offered");
      continue;
    }
    if (line == "DATA") {
      Check(current != nullptr && next_rcpt == current->message->recipients.size(),
            "DATA after every RCPT");
      after_data = true;
      continue;
    }
    if (line.rfind("BDAT ", 0) == 0) {
      Check(current != nullptr && next_rcpt == current->message->recipients.size(),
            "BDAT after every RCPT");
      Check(options.use_chunking, "BDAT only when allowed");
      std::string_view arg = line.substr(5);
      const bool last = arg.size() > 5 && arg.substr(arg.size() - 5) == " LAST";
      if (last) arg.remove_suffix(5);
      Check(!arg.empty() && std::all_of(arg.begin(), arg.end(), IsDigit) && arg.size() < 10,
            "BDAT size is a number");
      const size_t n = std::stoul(std::string(arg));
      const std::string& body = current->message->body;
      Check(pos + n <= out.size(), "BDAT chunk follows its command");
      Check(bdat_offset + n <= body.size() && out.substr(pos, n) == body.substr(bdat_offset, n),
            "BDAT chunks carry the body in order");
      Check(options.bdat_chunk_size == 0 || n <= options.bdat_chunk_size, "chunk size");
      pos += n;
      bdat_offset += n;
      if (last) {
        Check(bdat_offset == body.size(), "the LAST chunk ends the body");
        current->data_complete = true;
      }
      continue;
    }
    Check(false, "only known commands are sent");
  }
}

struct Plan {
  SmtpClientOptions options;
  std::vector<const OutboundMessage*> messages;
};

struct RunResult {
  std::string out;
  std::vector<Event> events;  // without kNeedInput, which depends on the cuts
  std::vector<std::string> results;
  std::string outcome;
  uint64_t discarded = 0;
};

std::string Flatten(const MessageResult& r) {
  std::string s = absl::StrCat(static_cast<int>(r.connection.kind), r.connection.reason, "|", r.tls,
                               r.dsn_passed_on, r.sent_with_bdat, "|",
                               r.data_reply ? r.data_reply->ToString() : "-");
  for (const RecipientResult& rr : r.recipients) {
    absl::StrAppend(&s, "|", rr.address, ",", static_cast<int>(rr.outcome), ",", rr.code, ",",
                    rr.enhanced_code, ",", rr.text, ",", rr.success_notify_not_relayed);
  }
  return s;
}

void CheckResult(const MessageResult& r, const Sent* sent, const OutboundMessage& m,
                 const SmtpClientOptions& options) {
  Check(r.recipients.size() == m.recipients.size(), "one result per recipient");
  for (size_t i = 0; i < m.recipients.size(); ++i) {
    const RecipientResult& rr = r.recipients[i];
    Check(rr.address == m.recipients[i].address, "results follow the recipients");
    const char want = rr.outcome == Outcome::kDelivered   ? '2'
                      : rr.outcome == Outcome::kTemporary ? '4'
                                                          : '5';
    Check(rr.code == 0 || rr.code / 100 == want - '0', "outcome matches the reply class");
    Check(!rr.enhanced_code.empty() && rr.enhanced_code[0] == want,
          "enhanced code matches the outcome");
    Check(rr.code != 0 || rr.outcome != Outcome::kDelivered, "delivery needs a reply");
    Check(rr.success_notify_not_relayed == (!r.dsn_passed_on && HasSuccess(m.recipients[i].notify)),
          "relayed notice exactly when SUCCESS was dropped");
    if (rr.outcome == Outcome::kDelivered) {
      Check(sent != nullptr && sent->data_complete, "delivered only after the whole data");
      Check(r.data_reply && r.data_reply->positive(), "delivered only with a 2xx data reply");
      Check(r.tls || options.tls != Tls::kRequired, "delivered in plaintext only when allowed");
    }
  }
}

RunResult Run(const std::vector<std::string_view>& turns, const Plan& plan,
              const std::vector<size_t>& cuts) {
  SmtpClientSession session(plan.options);
  RunResult run;
  std::vector<Sent> sent;
  std::vector<std::optional<size_t>> sent_index;  // per started message
  std::vector<const OutboundMessage*> started;
  std::vector<MessageResult> results;  // checked once the output is
  size_t tls_offset = std::string::npos;
  size_t next_message = 0;
  bool quit = false;
  size_t turn = 0;
  size_t pos = 0;  // in turns[turn]
  size_t next_cut = 0;
  size_t largest_read = 0;
  const size_t limit_bytes =
      plan.options.reply_limits.max_line_length * (plan.options.reply_limits.max_lines + 1);

  auto feed = [&](size_t n) {
    const size_t fed = std::min(n, turns[turn].size() - pos);
    largest_read = std::max(largest_read, fed);
    session.Receive(turns[turn].substr(pos, fed));
    pos += fed;
  };
  auto next_size = [&]() {
    return cuts.empty() ? std::string::npos : cuts[next_cut++ % cuts.size()];
  };
  // The rest of the turn has arrived before the driver acts.
  auto flush_turn = [&]() {
    while (turn < turns.size() && pos < turns[turn].size()) feed(next_size());
  };
  auto take_result = [&]() {
    std::optional<MessageResult> r = session.TakeResult();
    if (!r) return;
    Check(results.size() < started.size(), "one result per started message");
    run.results.push_back(Flatten(*r));
    results.push_back(std::move(*r));
    Check(!session.TakeResult().has_value(), "a result is taken once");
  };

  for (int steps = 0;; ++steps) {
    Check(steps < 100000, "the conversation ends");
    const Event event = session.Process(&run.out);
    // kReady is recorded once the rest of the turn is in (below).
    if (event != Event::kNeedInput && event != Event::kReady) run.events.push_back(event);
    switch (event) {
      case Event::kNeedInput:
        Check(session.buffered_bytes() <= limit_bytes + largest_read, "buffering is bounded");
        if (turn < turns.size() && pos < turns[turn].size()) {
          feed(next_size());
        } else if (turn + 1 < turns.size()) {
          ++turn;
          pos = 0;
          feed(next_size());
        } else {
          session.ConnectionLost("eof");
        }
        continue;
      case Event::kMessageDone:
        flush_turn();
        Check(session.Process(&run.out) == Event::kMessageDone, "kMessageDone repeats");
        take_result();
        continue;
      case Event::kStartTls: {
        flush_turn();
        Check(!session.tls_active(), "STARTTLS once");
        Check(plan.options.tls != Tls::kNever, "STARTTLS only when allowed");
        if (turn + 1 < turns.size() && !turns[turn + 1].empty() && turns[turn + 1][0] == '\x16') {
          ++turn;
          pos = 1;
          tls_offset = run.out.size();
          session.TlsStarted(&run.out);
          Check(session.tls_active(), "TLS active after TlsStarted");
        } else {
          session.TlsFailed("fuzz handshake failure");
        }
        continue;
      }
      case Event::kReady: {
        flush_turn();
        if (session.Process(&run.out) != Event::kReady) {
          continue;  // the rest of the turn closed or broke the session
        }
        run.events.push_back(Event::kReady);
        Check(plan.options.tls != Tls::kRequired || session.tls_active(),
              "ready in plaintext only when TLS is not required");
        if (next_message < plan.messages.size()) {
          const OutboundMessage* m = plan.messages[next_message++];
          const size_t before = run.out.size();
          const bool dsn = session.extensions().dsn;
          Check(session.StartMessage(*m, &run.out).ok(), "valid messages start");
          started.push_back(m);
          if (run.out.size() > before) {
            sent.push_back({m, before, dsn});
            sent_index.push_back(sent.size() - 1);
          } else {
            sent_index.push_back(std::nullopt);
          }
        } else {
          Check(!quit, "QUIT once");
          quit = true;
          Check(session.Quit(&run.out).ok(), "QUIT when ready");
        }
        continue;
      }
      case Event::kClosed:
      case Event::kFailed: {
        take_result();
        Check(run.results.size() == started.size(), "every started message has a result");
        // Final: more input changes nothing.
        std::string after;
        session.Receive("250 ok\r\n");
        Check(session.Process(&after) == event && after.empty(), "closed stays closed");
        const ConnectionOutcome& o = session.outcome();
        Check((event == Event::kClosed) == (o.kind == ConnectionOutcome::Kind::kOk ||
                                            o.kind == ConnectionOutcome::Kind::kServiceClosing),
              "kClosed exactly for QUIT and 421");
        Check(o.kind != ConnectionOutcome::Kind::kOk || quit, "kOk only after QUIT");
        run.outcome = absl::StrCat(static_cast<int>(o.kind), o.reason, "|", o.diagnostic);
        run.discarded = session.discarded_after_starttls();
        CheckOutput(run.out, &sent, tls_offset, plan.options);
        for (size_t k = 0; k < results.size(); ++k) {
          CheckResult(results[k], sent_index[k] ? &sent[*sent_index[k]] : nullptr, *started[k],
                      plan.options);
        }
        return run;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t a = data[0];
  const uint8_t b = data[1];
  Plan plan;
  plan.options.helo_name = "fuzz.test";
  constexpr Tls kModes[] = {Tls::kNever, Tls::kOpportunistic, Tls::kRequired, Tls::kOpportunistic};
  plan.options.tls = kModes[a & 3];
  plan.options.use_pipelining = !(a & 4);
  plan.options.use_chunking = !(a & 8);
  plan.options.bdat_chunk_size = (a & 16) ? 7 : 0;
  if (a & 32) {
    plan.options.reply_limits.max_line_length = 64;
    plan.options.reply_limits.max_lines = 4;
  }
  const size_t count = 1 + (b & 3);
  for (size_t i = 0; i < count; ++i) {
    plan.messages.push_back(&Messages()[((b >> 2) + i) % Messages().size()]);
  }

  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  std::vector<std::string_view> turns;
  size_t start = 0;
  for (;;) {
    const size_t sep = input.find('\xff', start);
    turns.push_back(input.substr(start, sep == std::string_view::npos ? sep : sep - start));
    if (sep == std::string_view::npos) break;
    start = sep + 1;
  }

  std::vector<size_t> cuts;
  uint32_t state = (a << 8 | b) * 2654435761u + 1;
  for (int i = 0; i < 32; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 16;
    cuts.push_back(r % 4 == 0 ? 1 + r % 200 : 1 + r % 5);
  }

  const RunResult whole = Run(turns, plan, {});
  const RunResult bytewise = Run(turns, plan, {1});
  const RunResult chunked = Run(turns, plan, cuts);
  for (const RunResult* other : {&bytewise, &chunked}) {
    Check(other->out == whole.out, "output does not depend on how input is cut");
    Check(other->events == whole.events, "events do not depend on how input is cut");
    Check(other->results == whole.results, "results do not depend on how input is cut");
    Check(other->outcome == whole.outcome, "outcome does not depend on how input is cut");
    Check(other->discarded == whole.discarded, "discards do not depend on how input is cut");
  }
  return 0;
}
