// SmtpClientSession: the client side of one outbound SMTP connection as a
// pure state machine, for delivery and the load generator. Server bytes in,
// command bytes and events out. No I/O, no clock, no TLS library: the driver
// moves the bytes, runs the TLS handshake and its timeouts, and tells the
// session what happened. Tests and the fuzzer drive it directly.
//
// Threading: one session belongs to one connection on one event loop thread.
//
// Flow (the driver appends everything the session writes to `out` to its
// send buffer, in order):
//   session.Receive(bytes)              -> buffers server bytes
//   switch (session.Process(&out)) {    -> reads replies, writes commands
//     case kNeedInput:    read more (the session waits for a reply)
//     case kStartTls:     the server said 220 to STARTTLS: send what is in
//                         out, handshake, then TlsStarted(&out) (EHLO is
//                         sent again) or TlsFailed(reason)
//     case kReady:        idle: StartMessage(msg, &out), or Quit(&out), or
//                         keep the connection for later
//     case kMessageDone:  result = TakeResult(); then Process again
//     case kClosed:       flush out and close; TakeResult() if a message
//                         was in flight
//     case kFailed:       the same; outcome() says why
//   }
// The read timeout, EOF and resets are the driver's to notice: it reports
// them with ConnectionLost(reason).
//
// Greeting and EHLO: a 220 greeting, then EHLO; a 5xx to EHLO falls back to
// HELO (no extensions). Any other 4xx/5xx greeting or reply to EHLO/HELO
// (421 aside, see below) fails the connection (kFailed, outcome kRejected,
// QUIT written to out).
//
// STARTTLS (RFC 3207): with Tls::kOpportunistic or kRequired and STARTTLS
// offered, the session sends it before anything else. After "220" the
// session discards every byte the server sent behind it in plaintext and
// everything Receive()d before TlsStarted() (the client side of the
// CVE-2011-0411 injection), then sends EHLO again and forgets the
// extensions learnt before TLS (RFC 3207 4.2). Under kRequired the session
// never writes MAIL, RCPT, DATA or BDAT before TlsStarted(): STARTTLS not
// offered ("starttls-not-supported") or refused ("starttls-rejected") ends
// with kFailed, outcome kTlsUnavailable. Under kOpportunistic a refused
// STARTTLS continues in plaintext. A failed handshake always ends the
// connection (kFailed, kTlsFailed): plaintext after a broken handshake needs
// a new connection, which is the driver's decision.
//
// Messages: StartMessage() checks what the server declared before sending:
// a message larger than SIZE fails every recipient permanently (5.3.4), one
// that needs SMTPUTF8 fails them with 5.6.7 where the server lacks it (RFC
// 6531 3.4); nothing is sent then. MAIL carries SIZE=, BODY=8BITMIME (when
// eight_bit and offered; 8-bit content goes out unconverted otherwise, as
// most MTAs do), SMTPUTF8, and RET/ENVID when DSN is offered; RCPT carries
// NOTIFY/ORCPT when DSN is offered.
//
// PIPELINING (RFC 2920): MAIL, every RCPT and DATA go out in one write and
// the replies are matched in order; without it, one command per round trip.
// CHUNKING (RFC 3030): the body goes out raw in BDAT chunks. With BDAT the
// chunks are sent only once the RCPT replies are in, so a message nobody
// accepted is never transmitted; with PIPELINING all chunks go in one write.
// DATA content is dot-stuffed and any bare CR or LF is sent as CRLF, so no
// body can end the DATA early on any server (SMTP smuggling).
//
// If MAIL fails, every recipient gets the MAIL reply. If no recipient was
// accepted, the transaction is reset (RSET; a pipelined DATA's 503/554 is
// consumed first). Each recipient's result is its RCPT reply if that failed,
// otherwise the reply to the end of the data (or the failing DATA/BDAT).
// After a failed DATA or BDAT, RSET. A 421 at any point ends the connection
// (kClosed): recipients without a result get the 421, a temporary failure.
// A malformed or out-of-place reply ends it with kFailed: recipients without
// a result fail temporarily with 4.5.0 (4.4.2 for ConnectionLost).
#ifndef POSTERN_ENGINE_OUTBOUND_SMTP_CLIENT_SESSION_H_
#define POSTERN_ENGINE_OUTBOUND_SMTP_CLIENT_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/smtp/smtp_reply.h"

namespace postern::engine {

struct SmtpClientOptions {
  enum class Tls {
    kNever,          // never STARTTLS
    kOpportunistic,  // STARTTLS when offered; plaintext if refused
    kRequired,       // STARTTLS or no mail at all
  };

  std::string helo_name;  // our name in EHLO/HELO
  Tls tls = Tls::kOpportunistic;
  bool use_pipelining = true;  // when the server offers PIPELINING
  bool use_chunking = true;    // BDAT when the server offers CHUNKING
  // Octets per BDAT chunk; 0 sends the whole body as one "BDAT n LAST".
  size_t bdat_chunk_size = 0;
  ReplyLimits reply_limits;
};

// What the server offered in its last EHLO reply (after TLS: the one inside
// TLS). All false after a HELO fallback.
struct ServerExtensions {
  bool starttls = false;
  bool pipelining = false;
  bool size = false;
  uint64_t size_limit = 0;  // SIZE's value; 0 where none was given (no limit)
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool chunking = false;
  bool dsn = false;
  bool enhanced_status_codes = false;
  // Every EHLO keyword, upper-cased, in order (for logs). Lines whose first
  // word is not a valid keyword are left out, so these are safe to log.
  std::vector<std::string> keywords;
};

struct OutboundRecipient {
  std::string address;  // without angle brackets
  // RFC 3461 NOTIFY, upper case ("SUCCESS,FAILURE", "NEVER"), "" if none.
  std::string notify;
  std::string orcpt;  // "rfc822;xtext" as received, "" if none
};

// One message to deliver. Borrowed by StartMessage() until its result is
// taken (kMessageDone, kClosed or kFailed); the session keeps no copy of the
// body.
struct OutboundMessage {
  std::string sender;  // "" for the null sender <>
  std::vector<OutboundRecipient> recipients;
  std::string dsn_ret;    // "FULL", "HDRS" or ""
  std::string dsn_envid;  // xtext as received, or ""
  // The content: dot-unstuffed, CRLF line endings, as spooled.
  std::string body;
  bool smtputf8 = false;   // needs SMTPUTF8 (also implied by 8-bit addresses)
  bool eight_bit = false;  // BODY=8BITMIME was declared on receipt
};

// Why a connection ended (or kOk while it has not, or after QUIT).
struct ConnectionOutcome {
  enum class Kind {
    kOk,
    kRejected,        // greeting or EHLO/HELO refused
    kTlsUnavailable,  // Tls::kRequired and STARTTLS missing or refused
    kTlsFailed,       // TlsFailed(): the handshake did not complete
    kServiceClosing,  // the server sent 421
    kProtocolError,   // malformed or unexpected reply; RSET refused
    kConnectionLost,  // ConnectionLost(): EOF, reset, timeout
  };
  Kind kind = Kind::kOk;
  // A fixed label, safe as a metric value: "", "greeting-rejected",
  // "ehlo-rejected", "helo-rejected", "starttls-not-supported",
  // "starttls-rejected", "tls-handshake-failed", "service-closing",
  // "malformed-reply", "unexpected-reply", "rset-failed", "connection-lost".
  std::string reason;
  std::optional<SmtpReply> reply;  // the server's reply behind it, if any
  std::string diagnostic;          // human-readable detail for logs and DSNs
};

struct RecipientResult {
  enum class Outcome { kDelivered, kTemporary, kPermanent };
  std::string address;
  Outcome outcome = Outcome::kTemporary;
  // The server's reply code; 0 where the session decided without a reply
  // (SIZE, SMTPUTF8, a broken connection).
  int code = 0;
  // The reply's enhanced code, or its class default (2.0.0, 4.0.0, 5.0.0),
  // or ours for local decisions (5.3.4, 5.6.7, 4.5.0, 4.4.2).
  std::string enhanced_code;
  std::string text;  // the reply's text, or our diagnostic
  // NOTIFY asked for SUCCESS but the server does not offer DSN, so it was
  // not passed on: once delivered, the queue owes the sender a "relayed"
  // DSN (action "relayed", RFC 3464 2.3.3).
  bool success_notify_not_relayed = false;
};

struct MessageResult {
  // kOk, or why the connection ended while this message was in flight.
  ConnectionOutcome connection;
  // Parallel to OutboundMessage::recipients: same size, same order.
  std::vector<RecipientResult> recipients;
  // The reply to the end of the data (or to a refused DATA/BDAT) where one
  // decided the accepted recipients' fate.
  std::optional<SmtpReply> data_reply;
  bool tls = false;             // sent inside TLS
  bool dsn_passed_on = false;   // the server offered DSN
  bool sent_with_bdat = false;  // CHUNKING used
};

class SmtpClientSession {
 public:
  enum class Event {
    kNeedInput,    // waiting for the server; read more
    kStartTls,     // handshake now, then TlsStarted() or TlsFailed()
    kReady,        // idle: StartMessage(), Quit(), or wait
    kMessageDone,  // TakeResult(), then Process() again
    kClosed,       // orderly end: QUIT answered, or the server's 421
    kFailed,       // anything else; outcome() says what
  };

  explicit SmtpClientSession(SmtpClientOptions options);
  ~SmtpClientSession();
  SmtpClientSession(const SmtpClientSession&) = delete;
  SmtpClientSession& operator=(const SmtpClientSession&) = delete;

  // Buffers bytes from the server. Dropped (and counted in
  // discarded_after_starttls) between the 220 to STARTTLS and TlsStarted();
  // ignored once closed or failed.
  void Receive(std::string_view bytes);

  // Processes buffered replies, appending commands to *out. kStartTls,
  // kMessageDone (until TakeResult), kClosed and kFailed repeat on every
  // call. In kReady a complete buffered reply is unsolicited: a 421 closes
  // (kClosed), anything else is a protocol error (kFailed).
  Event Process(std::string* out);

  // Begins a transaction; only in kReady with no result left untaken
  // (FailedPrecondition otherwise). InvalidArgument for a message the
  // session cannot put on the wire: no recipients, an empty recipient,
  // control characters in an address, or DSN values that are not xtext.
  // `message` is borrowed until the result is taken.
  absl::Status StartMessage(const OutboundMessage& message, std::string* out);

  // The finished message's result: after kMessageDone, or after kClosed /
  // kFailed when a message was in flight. nullopt otherwise.
  std::optional<MessageResult> TakeResult();

  // After kStartTls: the handshake completed; EHLO goes into *out. Ignored
  // (and a debug assert) at any other time.
  void TlsStarted(std::string* out);
  // After kStartTls: the handshake failed; the session fails (kTlsFailed)
  // with `reason` as the diagnostic. Ignored (and a debug assert) at any
  // other time.
  void TlsFailed(std::string_view reason);

  // In kReady, the last result taken: writes QUIT; its reply (or the
  // server hanging up) ends with kClosed. FailedPrecondition otherwise.
  absl::Status Quit(std::string* out);

  // The driver lost the connection (EOF, reset, timeout). Recipients in
  // flight fail temporarily (4.4.2); kFailed follows, or kClosed if QUIT
  // had been sent. Ignored once closed or failed.
  void ConnectionLost(std::string_view reason);

  // Facts for logs.
  const ConnectionOutcome& outcome() const;
  // The first word of the greeting text (the server's name for itself),
  // sanitised as reply text is; "" before the greeting.
  const std::string& banner_host() const;
  const ServerExtensions& extensions() const;
  bool tls_active() const;
  bool used_helo() const;  // EHLO was refused and HELO used instead
  // Octets the server sent after its 220 to STARTTLS, before the handshake,
  // dropped unread. Anything above 0 is a broken server or an attacker.
  uint64_t discarded_after_starttls() const;
  // Server octets received and not yet processed; at most one partial reply
  // (bounded by ReplyLimits) plus the driver's last reads.
  size_t buffered_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_SMTP_CLIENT_SESSION_H_
