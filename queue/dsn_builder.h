// DSN builder: the delivery status notifications Postern sends back to a
// message's sender (RFC 3461 for when, RFC 3464 and RFC 6522 for the format,
// RFC 6533 for SMTPUTF8 mail). Pure logic: envelope and body in, the notice
// (an envelope to spool and its body) out. No I/O, no clock reads.
//
// Who gets a notice (RecipientsToNotify):
// - never for a message with the null sender or one that is itself a DSN
//   (is_dsn): a notice about a notice could loop (RFC 5321 4.5.5);
// - per recipient, RFC 3461 NOTIFY: NEVER gets nothing; a list gets the
//   kinds it names (FAILURE, DELAY, SUCCESS for relayed and delivered);
//   absent NOTIFY is read as "FAILURE,DELAY", the choice RFC 3461 4.1 leaves
//   to the MTA, so failures and delay warnings go out, success reports not;
// - a delay warning only to recipients not yet warned (delay_notified).
// The caller picks the candidates by state (failed, deferred, delivered).
//
// The notice (BuildDsn):
// - envelope: queue_id = dsn_queue_id, null sender (RFC 3461 6.2, so it can
//   never be answered with another notice), one recipient (the original
//   sender), is_dsn, arrival_time = now, body_size, smtputf8 only when the
//   notice itself carries UTF-8 in a header or address, eight_bit_mime when
//   the body has 8-bit octets. No schedule: the caller makes it due.
// - body: multipart/report; report-type=delivery-status with three parts:
//   text/plain for people, message/delivery-status for programs, and the
//   returned message. CRLF line endings, no line over 998 octets, header
//   fields folded; the boundary is checked against every part's content.
//   When the original was SMTPUTF8 and an address in the report is not
//   ASCII, the second part is message/global-delivery-status (and the
//   report-type global-delivery-status); addresses then use the "utf-8"
//   address type.
// - what comes back in the third part (Postfix's bounce_size_limit in
//   spirit, but never a truncated message):
//   * failure notices: the whole message as message/rfc822 unless RET=HDRS,
//     the message is larger than max_returned_body, or it has a line the
//     notice could not carry (over 998 octets or a bare CR/LF, possible with
//     BDAT); then its header section as text/rfc822-headers. A cut-off
//     message would look complete to the sender, so it is never truncated.
//   * delay, relayed and delivered notices: the header section only
//     (RFC 3461 4.3: RET applies to failure notices).
//   * a header section over max_returned_body or with such a line: no third
//     part (RFC 6522 makes it optional).
//   * SMTPUTF8 originals use message/global and message/global-headers.
// - per-recipient fields: Original-Recipient (ORCPT, xtext decoded),
//   Final-Recipient, Action, Status (recipient.status with its class forced
//   to the notice's: 5 failed, 4 delayed, 2 relayed/delivered; X.0.0 when
//   missing), Remote-MTA (host name of remote_mta), Diagnostic-Code
//   ("smtp; <reply>" for a remote reply, "X-Postern; <text>" for a local
//   diagnostic; a TLS failure's tls_result always appears in the text),
//   Last-Attempt-Date (final_time, when set), Will-Retry-Until (delay
//   notices, when given). ENVID and ORCPT values that do not decode to
//   printable text are shown as received.
//
// Threading: free functions on caller-owned data; safe from any thread.
#ifndef POSTERN_QUEUE_DSN_BUILDER_H_
#define POSTERN_QUEUE_DSN_BUILDER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"

namespace postern::queue {

enum class DsnKind {
  kFailure,    // Action: failed
  kDelay,      // Action: delayed (a warning; delivery goes on)
  kRelayed,    // Action: relayed (NOTIFY=SUCCESS, next hop without DSN)
  kDelivered,  // Action: delivered (NOTIFY=SUCCESS, accepted for delivery)
};

struct DsnInput {
  // Borrowed for the call; must not be null.
  const v1::Envelope* original = nullptr;
  // The original message as spooled (CRLF lines, Received header included).
  std::string_view original_body;
  DsnKind kind = DsnKind::kFailure;
  // Indexes into original->recipients() to report on; BuildDsn keeps those
  // RecipientsToNotify allows.
  std::vector<int> recipients;
  std::string reporting_mta;  // our host name: Reporting-MTA, From, Message-ID
  std::string dsn_queue_id;   // queue id of the notice
  absl::Time now;             // Date, Arrival time of the notice
  // The largest original returned whole (Postfix bounce_size_limit).
  size_t max_returned_body = 50 * 1024;
  // Delay notices: when the queue gives up (Will-Retry-Until), if known.
  std::optional<absl::Time> will_retry_until;
};

// A notice ready to spool: the fields map one to one onto SpoolRecord.
struct Dsn {
  v1::Envelope envelope;
  std::string body;
};

// The subset of `candidates` (indexes into envelope.recipients(), in their
// order) a notice of `kind` may report on; see the rules above. Indexes out
// of range and repeats are dropped.
std::vector<int> RecipientsToNotify(const v1::Envelope& envelope, DsnKind kind,
                                    const std::vector<int>& candidates);

// Builds the notice for input.recipients (filtered by RecipientsToNotify).
// kInvalidArgument: no original, an index out of range, an empty
// reporting_mta or dsn_queue_id. kFailedPrecondition: nothing may be sent
// (null sender, is_dsn, or no recipient left to notify).
absl::StatusOr<Dsn> BuildDsn(const DsnInput& input);

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_DSN_BUILDER_H_
