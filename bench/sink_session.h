// SinkSession: the server side of one SMTP conversation of postern-sink, the
// benchmark and test receiver, as a pure state machine. Bytes in, reply bytes
// out, and requests for the owner ("a message ended", "start TLS now",
// "close"). No I/O, no clock, no threads; bench/postern_sink_main.cc drives it
// from its io_uring loop, tests drive it directly.
//
// Unlike engine/SmtpServerSession it keeps no message: content is hashed (SHA-256)
// and counted as it streams past, so a sink holds a few kilobytes per
// connection whatever the message size. Replies are configurable (SinkOptions)
// so integration tests can make it refuse, defer, or hide extensions.
//
// Flow:
//   [implicit TLS: handshake first, then TlsStarted(info)]
//   session.Start(&out)                  -> greeting
//   session.Receive(bytes)               -> buffers input
//   switch (session.Process(&out)) {     -> handles buffered input, replies into out
//     case kNeedInput:   read more
//     case kMessage:     message() is complete; record it if
//                        message_accepted(); optionally wait (--delay-ms);
//                        then FinishMessage(&out) and Process again
//     case kWaitMessage: FinishMessage not called yet; nothing consumed
//     case kStartTls:    out ends with the 220; send it in plaintext,
//                        handshake, then TlsStarted(info); returned again until then
//     case kClose:       flush out, then close
//   }
// Pipelined commands are answered in order; replies to a whole batch collect
// in `out` before the owner sends them (RFC 2920).
//
// DATA: dot-unstuffing and end detection are engine::DataReader's (only
// <CRLF>.<CRLF> ends the data). Content with a bare CR or LF is answered
// 550 5.6.11 and not recorded, as posternd does. BDAT (RFC 3030): chunk octets
// are raw and hashed as received; no CRLF is added after BDAT LAST. Either
// way message().sha256_hex is the SHA-256 of exactly the octets the sender
// meant as the message.
//
// Commands are split at LF (a CR before it is dropped), so bare-LF command
// lines are tolerated; lines longer than SinkOptions::max_line are answered
// 500 and skipped. A BDAT line that cannot be parsed loses the stream's
// framing: 501, then 421 and close.
//
// STARTTLS: anything the client sent behind the STARTTLS line, or before
// TlsStarted(), is dropped unread (CVE-2011-0411). TlsStarted() forgets
// HELO/EHLO and the transaction.
//
// Threading and lifetime: one session per connection on the loop thread. The
// SinkOptions it is given are borrowed and must outlive it.
#ifndef POSTERN_BENCH_SINK_SESSION_H_
#define POSTERN_BENCH_SINK_SESSION_H_

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/smtp/data_reader.h"

namespace postern::bench {

// How the sink answers; shared by every session of a process.
struct SinkOptions {
  std::string hostname = "postern-sink.test";
  // The whole greeting line without CRLF; "" for "220 <hostname> ESMTP
  // postern-sink". A 421 greeting closes the connection at once; any other
  // non-2xx greeting answers every command but QUIT with 503 (RFC 5321 3.1).
  std::string greeting;
  bool ehlo = true;  // false: EHLO is answered 502 so the client uses HELO
  // Extensions offered in the EHLO reply (SIZE and ENHANCEDSTATUSCODES always).
  // MAIL/RCPT parameters of an extension not offered are refused with 555,
  // BDAT with 502 (its octets are still consumed).
  bool pipelining = true;
  bool chunking = true;
  bool eight_bit_mime = true;
  bool smtputf8 = true;
  bool dsn = true;
  bool starttls = false;  // offer STARTTLS (the owner must be able to do TLS)
  // Replies, each a whole line "CODE TEXT" without CRLF; "" for the default
  // 250. A 2xx reply accepts (MAIL starts the transaction, RCPT adds the
  // recipient, DATA/BDAT LAST records the message), anything else refuses.
  std::string reply_mail;
  std::string reply_rcpt;
  // Non-empty: reply_rcpt only for recipients containing this substring;
  // the others get the default 250.
  std::string reject_rcpt;
  std::string reply_data;  // the reply at the end of DATA and BDAT LAST
  size_t max_line = 4096;  // command line, CRLF included
  // Keep each message's content (SinkMessage::content) for tests that read
  // what arrived; off for benchmarks, which only hash.
  bool keep_content = false;
};

// "CODE TEXT" with a code 200-599; OK or InvalidArgument naming the problem.
absl::Status ValidateReplyLine(std::string_view line);

// ESMTP parameters, keyword upper-cased, value as sent ("" for none), in order.
using EsmtpParams = std::vector<std::pair<std::string, std::string>>;

// What the TLS layer negotiated; sni is "" when the client sent none.
struct SinkTlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"
  std::string sni;
};

// A message whose content ended (DATA end or BDAT LAST).
struct SinkMessage {
  std::string helo;  // HELO/EHLO argument
  bool esmtp = false;
  std::string mail_from;  // "" for the null sender
  EsmtpParams mail_params;
  std::vector<std::string> rcpt;         // accepted recipients, in order
  std::vector<EsmtpParams> rcpt_params;  // parallel to rcpt
  bool bdat = false;                     // content came by BDAT, not DATA
  uint64_t size = 0;                     // content octets (after dot-unstuffing)
  std::string sha256_hex;                // lowercase hex over those octets
  std::optional<SinkTlsInfo> tls;
  std::string content;  // the octets themselves, with SinkOptions::keep_content
};

// The message as one JSON object without a trailing newline:
// {"helo":..,"esmtp":..,"mail_from":..,"mail_params":{..},"rcpt":[..],
//  "rcpt_params":[{..}],"transfer":"DATA"|"BDAT","size":N,"sha256":"..",
//  "tls":{"version":..,"cipher":..,"sni":..|null}|null[,"content":..]}
// Strings that are not valid UTF-8 have the bad octets replaced by U+FFFD.
std::string SinkMessageJson(const SinkMessage& message);

class SinkSession {
 public:
  enum class Event {
    kNeedInput,    // all buffered input handled; read more
    kMessage,      // a message ended; see message(), then FinishMessage()
    kWaitMessage,  // FinishMessage() not called yet; nothing consumed
    kStartTls,     // send out, handshake, TlsStarted(); repeated until then
    kClose,        // flush out and close; further input is ignored
  };

  explicit SinkSession(const SinkOptions* options);
  SinkSession(const SinkSession&) = delete;
  SinkSession& operator=(const SinkSession&) = delete;

  // Appends the greeting. Call once (after TlsStarted() for implicit TLS).
  void Start(std::string* out);
  // Bytes from the client (plaintext); copied. Ignored while TLS is being
  // started and after close.
  void Receive(std::string_view bytes);
  Event Process(std::string* out);

  // Valid from kMessage until FinishMessage().
  const SinkMessage& message() const { return message_; }
  // The end reply will be 2xx: count and record the message.
  bool message_accepted() const { return message_accepted_; }
  // Appends the end-of-message reply and ends the transaction.
  void FinishMessage(std::string* out);

  // The handshake after STARTTLS (or before Start() for implicit TLS) is done.
  void TlsStarted(SinkTlsInfo info);
  bool tls_active() const { return tls_.has_value(); }

  // From now on MAIL is answered 421 and the connection closed, so a
  // stopping sink accepts no new transaction but lets current ones finish.
  void SetDraining() { draining_ = true; }
  // Appends 421 and makes the next Process() return kClose.
  void Shutdown(std::string* out);

 private:
  enum class Phase {
    kCommand,
    kData,         // reading DATA content
    kBdat,         // reading the octets of a BDAT chunk
    kMessage,      // content ended; kMessage not yet returned
    kMessageWait,  // kMessage returned; waiting for FinishMessage()
    kStartTls,     // 220 sent; waiting for TlsStarted()
    kClosed,
  };

  std::string_view Pending() const;
  void Compact();
  void HandleLine(std::string_view line, std::string* out);
  void HandleEhlo(std::string_view name, bool ehlo, std::string* out);
  void HandleMail(std::string path, EsmtpParams params, std::string* out);
  void HandleRcpt(std::string path, EsmtpParams params, std::string* out);
  void HandleData(std::string* out);
  void HandleBdat(std::string_view argument, std::string* out);
  void HandleStartTls(std::string* out);
  bool StepData();
  bool StepBdat(std::string* out);
  void EndContent(bool clean);
  void ResetTransaction();
  void Reply(std::string* out, std::string_view line);
  void Close(std::string* out, std::string_view line);
  // The reply for a MAIL/RCPT parameter list, "" if acceptable.
  std::string CheckParams(const EsmtpParams& params, bool mail, bool smtputf8) const;

  const SinkOptions* options_;
  Phase phase_ = Phase::kCommand;
  std::string input_;
  size_t input_pos_ = 0;
  bool skipping_long_line_ = false;
  bool greeting_refused_ = false;  // non-2xx greeting: 503 until QUIT
  bool draining_ = false;

  std::string helo_;
  bool esmtp_ = false;
  std::optional<SinkTlsInfo> tls_;

  // The transaction.
  bool in_mail_ = false;
  bool smtputf8_ = false;
  SinkMessage message_;
  bool message_accepted_ = false;
  std::string end_reply_;
  std::optional<engine::DataReader> data_reader_;
  std::string scratch_;  // unstuffed content between DataReader and the hash
  SHA256_CTX sha_{};
  uint64_t content_size_ = 0;
  bool bdat_started_ = false;  // the transaction's content comes by BDAT
  // The BDAT chunk being read.
  uint64_t chunk_size_ = 0;
  uint64_t chunk_remaining_ = 0;
  bool chunk_last_ = false;
  std::string chunk_reject_;  // non-empty: the chunk is discarded, this is its reply
};

}  // namespace postern::bench

#endif  // POSTERN_BENCH_SINK_SESSION_H_
