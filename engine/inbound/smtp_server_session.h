// SmtpServerSession: the server side of one SMTP conversation as a pure state
// machine. Bytes in, reply bytes out, and requests for the owner: "spool this
// message", "start TLS now", "check these credentials" and "close the
// connection". No I/O, no clock reads, no threads, no TLS library: the
// connection glue (engine/inbound/inbound_connection.*) drives it from the event loop,
// does TLS and password checks itself and tells the session the outcome;
// tests and fuzzers drive it directly.
//
// Threading: one session belongs to one connection on one event loop thread.
//
// Flow:
//   [implicit TLS: handshake first, then session.TlsStarted(facts)]
//   session.Start(&out)                    -> greeting into out
//   session.Receive(bytes)                 -> buffers input (never processes)
//   switch (session.Process(&out)) {       -> processes buffered input, replies into out
//     case kNeedInput: read more
//     case kSpool:     msg = session.TakeMessage(id, now); spool it; later
//                      session.SpoolDone(status, &out) and call Process again
//     case kStartTls:  send out (it ends with "220 2.0.0 Ready to start TLS")
//                      in plaintext, run the TLS handshake, then
//                      session.TlsStarted(facts) and read (decrypted) input;
//                      if the handshake fails, close
//     case kAuthCheck: req = session.TakeAuthRequest(); verify it off the loop
//                      thread (argon2id is slow); later
//                      session.AuthDone(outcome, domains, &out), Process again
//     case kClose:     flush out, then close
//   }
// While a message is being spooled Process() returns kWaitSpool, and while
// credentials are being checked kWaitAuth; neither consumes anything, so
// pipelined commands are kept and answered in order afterwards (RFC 2920).
//
// Extensions offered in EHLO: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING,
// DSN, ENHANCEDSTATUSCODES, and per listener STARTTLS and AUTH.
//
// CHUNKING (RFC 3030): "BDAT <size> [LAST]" is followed by exactly <size>
// raw octets, which the session always consumes, whatever it answers, so the
// stream stays in step; the reply follows the octets. A chunk is answered
// "250 2.0.0 <size> octets received"; BDAT LAST completes the message (kSpool,
// then the "queued" reply from SpoolDone, as after DATA). A BDAT line the
// session cannot parse leaves it unable to find the next command, so it is
// answered 501 and the connection closed (421). BINARYMIME is not offered.
//
// DSN (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT are
// checked and handed over with the message for the queue to use.
//
// STARTTLS (RFC 3207): bytes the client sent behind the STARTTLS line, before
// the handshake, are discarded and never interpreted (the CVE-2011-0411
// command injection); so is anything Receive()d before TlsStarted(). After
// TlsStarted() the session forgets EHLO, the transaction and AUTH: the client
// must EHLO again.
//
// Secrets: AUTH credentials leave the session only through TakeAuthRequest().
// Replies never echo them, rejection reasons are fixed labels, and the
// session overwrites its own copies (the SASL lines in its input buffer and
// the decoded values) once they are handed over. This is best effort: copies
// in kernel and TLS buffers are out of its reach.
#ifndef POSTERN_ENGINE_INBOUND_SMTP_SERVER_SESSION_H_
#define POSTERN_ENGINE_INBOUND_SMTP_SERVER_SESSION_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/inbound/inbound_policy.h"
#include "engine/inbound/relay_policy.h"
#include "engine/smtp/smtp_command.h"

namespace postern::engine {

struct SessionLimits {
  size_t max_message_size = 50 * 1024 * 1024;  // octets of message content
  size_t max_recipients = 1000;
  size_t max_command_line = 512;  // RFC 5321 4.5.3.1.4, CRLF included
  // MAIL and RCPT lines may be this much longer: extensions add parameters
  // (RFC 5321 4.5.3.1.4; RFC 3461 4 allows +100 on MAIL for ENVID and +500 on
  // RCPT for NOTIFY and ORCPT, RFC 4954 5 +500 on MAIL for AUTH=).
  size_t mail_rcpt_line_extension = 500;
  size_t max_text_line = 1000;  // RFC 5321 4.5.3.1.6, CRLF included
  size_t max_errors = 20;       // then 421 and close
};

// Facts about the connection, fixed for the session's life.
struct SessionContext {
  // Per listener `tls:` (docs/CONFIG.md). kOffer advertises STARTTLS and accepts
  // plaintext; kRequire answers MAIL, RCPT, DATA, BDAT (and AUTH where the
  // listener has no AUTH) with 530 until STARTTLS; kImplicit expects
  // TlsStarted() before Start() and never offers STARTTLS (until then it
  // behaves like kRequire, so a glue bug cannot open a plaintext path).
  enum class TlsMode { kNone, kOffer, kRequire, kImplicit };

  std::string hostname;   // our name: greeting, EHLO reply, Received "by"
  std::string listener;   // listener name (logs, envelope)
  std::string client_ip;  // textual address of the peer
  uint16_t client_port = 0;
  const RelayPolicy* relay = nullptr;  // borrowed; outlives the session
  SessionLimits limits;

  TlsMode tls_mode = TlsMode::kNone;
  // `auth: after_tls`: AUTH PLAIN and LOGIN, offered and accepted inside TLS
  // only; before TLS, AUTH is answered 538.
  bool auth_enabled = false;
  // `relay.sender_login_match`: an authenticated client's MAIL FROM domain
  // must be one of the domains AuthDone() gave for its user.
  bool sender_login_match = false;
  // Partner rules and TLS-only recipient domains; borrowed, outlives the
  // session. nullptr: no such rules.
  const InboundPolicy* inbound = nullptr;
};

// What the TLS layer learnt in the handshake. version and cipher are the
// library's names ("TLSv1.3", "TLS_AES_256_GCM_SHA384"); they go into the
// Received header, so anything outside [A-Za-z0-9._-] is dropped there.
struct TlsFacts {
  std::string version;
  std::string cipher;
  int bits = 0;      // secret bits of the cipher
  int alg_bits = 0;  // bits of the algorithm
  // SHA-256 of the client's DER certificate and of its SubjectPublicKeyInfo,
  // lowercase hex; both empty if the client sent no certificate.
  std::string peer_cert_sha256;
  std::string peer_spki_sha256;
};

// Credentials to verify, from AUTH PLAIN or LOGIN. Never log them; move the
// password into the verifier, which wipes it after use.
struct AuthRequest {
  std::string username;
  std::string password;
};

enum class AuthOutcome {
  kOk,         // 235 2.7.0 Authentication successful
  kBad,        // 535 5.7.8 Authentication credentials invalid
  kThrottled,  // 454 4.7.0 Too many failed authentication attempts, try later
  kTempFail,   // 454 4.7.0 Temporary authentication failure (verifier busy)
};

// One recipient's DSN parameters (RFC 3461 4.1, 4.2), "" where not given.
struct RecipientDsn {
  std::string address;  // the same as AcceptedMessage::recipients[i]
  // NOTIFY upper-cased, in the order sent: "NEVER" or a comma list of
  // SUCCESS, FAILURE, DELAY ("SUCCESS,FAILURE").
  std::string notify;
  // ORCPT as received, not decoded: "addr-type;xtext" ("rfc822;bob+2Bx@b.test").
  std::string orcpt;
};

// A message that completed DATA or BDAT LAST, ready to be spooled.
struct AcceptedMessage {
  std::string sender;                   // "" for the null sender <>
  std::vector<std::string> recipients;  // without angle brackets
  std::string helo;                     // EHLO/HELO argument
  bool smtputf8 = false;
  bool eight_bit_mime = false;
  // DSN (RFC 3461): RET upper-cased ("FULL", "HDRS", or "" if not given);
  // ENVID as received, still xtext-encoded ("" if not given).
  std::string dsn_ret;
  std::string dsn_envid;
  // Parallel to `recipients`: same size, same order.
  std::vector<RecipientDsn> recipient_dsn;
  // Received header, then the content. After DATA: exactly as sent,
  // dot-unstuffed, CRLF line endings, without the terminating ".CRLF". After
  // BDAT: the chunks' octets exactly as sent, plus a CRLF if the last line
  // had none; lines may be longer than max_text_line (RFC 3030 has no line
  // limit).
  std::string body;
};

// The command verbs counted for metrics are the parser's verbs. kUnknown:
// unrecognised verbs, lines that fail to parse (whatever their verb) and
// over-long lines.
using CommandVerb = SmtpCommand::Verb;
inline constexpr size_t kCommandVerbCount = static_cast<size_t>(SmtpCommand::Verb::kBdat) + 1;

// "EHLO", ..., "STARTTLS", "AUTH", "UNKNOWN": fixed strings, safe as metric
// label values.
std::string_view CommandVerbName(CommandVerb verb);

class SmtpServerSession {
 public:
  enum class Event {
    kNeedInput,  // everything buffered was processed; read more
    kSpool,      // a message is complete: TakeMessage, spool, then SpoolDone
    kWaitSpool,  // still waiting for SpoolDone; nothing was consumed
    kClose,      // flush `out` and close the connection (QUIT, 421, ...)
    // "220 2.0.0 Ready to start TLS" is the last line in `out`: send it in
    // plaintext, handshake, then TlsStarted(). Returned again by every
    // Process() until then; nothing is consumed.
    kStartTls,
    kAuthCheck,  // credentials complete: TakeAuthRequest, verify, AuthDone
    kWaitAuth,   // still waiting for AuthDone; nothing was consumed
  };

  // What the session is reading, for the glue's timeouts (RFC 5321 4.5.3.2
  // gives message content a longer one than commands).
  enum class Phase {
    kCommand,  // everything else: commands, or waiting on the spool, AUTH, TLS
    kData,     // DATA content, or the octets of a BDAT chunk
  };

  explicit SmtpServerSession(SessionContext context);
  ~SmtpServerSession();
  SmtpServerSession(const SmtpServerSession&) = delete;
  SmtpServerSession& operator=(const SmtpServerSession&) = delete;

  // Appends the 220 greeting to *out.
  void Start(std::string* out);

  // Buffers bytes received from the peer.
  void Receive(std::string_view bytes);

  // Processes buffered input, appending replies to *out.
  Event Process(std::string* out);

  // After kSpool: the completed message with a Received header naming
  // `queue_id` and `now`. The session then waits in kWaitSpool.
  AcceptedMessage TakeMessage(std::string_view queue_id, absl::Time now);

  // The spool's answer: OK -> "250 2.0.0 Ok: queued as <id>"; an error ->
  // "452 4.3.1 Insufficient system storage". Resets the transaction.
  void SpoolDone(const absl::Status& status, std::string_view queue_id, std::string* out);

  // The TLS handshake succeeded: after kStartTls, or for implicit TLS before
  // Start(). Resets EHLO, the transaction and AUTH (RFC 3207 4.2) and resumes
  // reading; input buffered before this call is dropped. Ignored (and a
  // debug assert) at any other time.
  void TlsStarted(const TlsFacts& facts);

  // After kAuthCheck: the credentials, moved out (the session keeps no
  // copy). The session then waits in kWaitAuth. Called at any other time it
  // returns empty credentials.
  AuthRequest TakeAuthRequest();

  // The verifier's answer. On kOk, `user_domains` are the domains the user
  // may send from (relay.sender_login_match); the session is authenticated
  // and may relay to any domain. Ignored unless the session is in kWaitAuth
  // (it may have been closed meanwhile by Timeout or Shutdown).
  void AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains, std::string* out);

  // The connection is being shut down by us (idle timeout, drain): appends the
  // matching 421 reply; nothing while a STARTTLS handshake is in progress
  // (there is no channel to send it on).
  void Timeout(std::string* out);
  void Shutdown(std::string* out);

  Phase phase() const;

  // Counters the glue exports as metrics.
  uint64_t commands() const;
  // Command lines per verb since the last call (then zeroed), indexed by
  // CommandVerb. Their sum grows with commands(); AUTH exchange lines are
  // not commands.
  std::array<uint64_t, kCommandVerbCount> TakeCommandCounts();
  uint64_t messages_accepted() const;
  // Bytes the client sent after STARTTLS and before the handshake, dropped
  // unread. Anything above 0 is a broken or hostile client.
  uint64_t discarded_after_starttls() const;
  bool tls_active() const;
  bool authenticated() const;
  // Bytes received but not processed yet (pipelined input held while waiting
  // for SpoolDone, or a partial line). The glue stops reading above a bound
  // of its choosing, so a client cannot grow this without limit.
  size_t buffered_bytes() const;
  // Set when the last Process()/SpoolDone() rejected something; the reason is
  // a metric label value ("relay_denied", "line_too_long", "auth_failed",
  // ...; never peer data), then cleared
  // by TakeRejections().
  std::vector<std::string> TakeRejections();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_SMTP_SERVER_SESSION_H_
