// SmtpSession: the server side of one SMTP conversation as a pure state
// machine. Bytes in, reply bytes out, and two kinds of request for the owner:
// "spool this message" and "close the connection". No I/O, no clock reads, no
// threads: the connection glue (engine/connection.*) drives it from the event
// loop, and tests and fuzzers drive it directly.
//
// Threading: one session belongs to one connection on one event loop thread.
//
// Flow:
//   session.Start(&out)                    -> greeting into out
//   session.Receive(bytes)                 -> buffers input (never processes)
//   switch (session.Process(&out)) {       -> processes buffered input, replies into out
//     case kNeedInput: read more
//     case kSpool:     msg = session.TakeMessage(id, now); spool it; later
//                      session.SpoolDone(status, &out) and call Process again
//     case kClose:     flush out, then close
//   }
// While a message is being spooled Process() returns kSpool-pending state
// kWaitSpool and consumes nothing: pipelined commands after the DATA end are
// kept and answered in order after the 250 (RFC 2920).
#ifndef POSTERN_ENGINE_SMTP_SESSION_H_
#define POSTERN_ENGINE_SMTP_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/relay_policy.h"

namespace postern::engine {

struct SessionLimits {
  size_t max_message_size = 50 * 1024 * 1024;  // octets of message content
  size_t max_recipients = 1000;
  size_t max_command_line = 512;  // RFC 5321 4.5.3.1.4, CRLF included
  size_t max_text_line = 1000;    // RFC 5321 4.5.3.1.6, CRLF included
  size_t max_errors = 20;         // then 421 and close
};

// Facts about the connection, fixed for the session's life.
struct SessionContext {
  std::string hostname;   // our name: greeting, EHLO reply, Received "by"
  std::string listener;   // listener name (logs, envelope)
  std::string client_ip;  // textual address of the peer
  uint16_t client_port = 0;
  const RelayPolicy* relay = nullptr;  // borrowed; outlives the session
  SessionLimits limits;
};

// A message that completed DATA, ready to be spooled.
struct AcceptedMessage {
  std::string sender;                   // "" for the null sender <>
  std::vector<std::string> recipients;  // without angle brackets
  std::string helo;                     // EHLO/HELO argument
  bool smtputf8 = false;
  bool eight_bit_mime = false;
  // Received header, then the content exactly as sent, dot-unstuffed, CRLF
  // line endings, without the terminating ".CRLF".
  std::string body;
};

class SmtpSession {
 public:
  enum class Event {
    kNeedInput,  // everything buffered was processed; read more
    kSpool,      // a message is complete: TakeMessage, spool, then SpoolDone
    kWaitSpool,  // still waiting for SpoolDone; nothing was consumed
    kClose,      // flush `out` and close the connection (QUIT, 421, ...)
  };

  explicit SmtpSession(SessionContext context);
  ~SmtpSession();
  SmtpSession(const SmtpSession&) = delete;
  SmtpSession& operator=(const SmtpSession&) = delete;

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

  // The connection is being shut down by us (idle timeout, drain): appends the
  // matching 421 reply.
  void Timeout(std::string* out);
  void Shutdown(std::string* out);

  // Counters the glue exports as metrics.
  uint64_t commands() const;
  uint64_t messages_accepted() const;
  // Bytes received but not processed yet (pipelined input held while waiting
  // for SpoolDone, or a partial line). The glue stops reading above a bound
  // of its choosing, so a client cannot grow this without limit.
  size_t buffered_bytes() const;
  // Set when the last Process()/SpoolDone() rejected something; the reason is
  // a metric label value ("relay_denied", "line_too_long", ...), then cleared
  // by TakeRejections().
  std::vector<std::string> TakeRejections();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_SESSION_H_
