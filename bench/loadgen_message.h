// The load generator's messages: sizes drawn from a weighted mix, unique
// Message-IDs, recipient addresses with a counter, and content that is
// always valid SMTP data.
//
// Content: RFC 5322 headers (Message-ID, Date, From, To, Subject), a blank
// line, then filler lines of at most 80 octets, every line ending in CRLF.
// Some filler lines start with "." and one in sixteen is a lone ".", so every
// run exercises dot-stuffing on the client and unstuffing on the server. The
// content is exactly the drawn size in octets unless the headers alone are
// longer (sizes below about 250 octets give the headers only).
//
// Threading: a MessageFactory belongs to one thread (it owns its random
// generator and counters). Deterministic for a given seed and run id.
#ifndef POSTERN_BENCH_LOADGEN_MESSAGE_H_
#define POSTERN_BENCH_LOADGEN_MESSAGE_H_

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/outbound/smtp_client_session.h"

namespace postern::bench {

// Message sizes with weights, e.g. "60:4096,30:40960,10:409600": 60 % of
// the messages 4 KiB, 30 % 40 KiB, 10 % 400 KiB. Weights need not add up to
// 100.
struct SizeMix {
  struct Entry {
    uint64_t weight = 0;
    uint64_t bytes = 0;
  };
  std::vector<Entry> entries;

  static SizeMix Fixed(uint64_t bytes) { return SizeMix{{Entry{1, bytes}}}; }
  uint64_t total_weight() const;
  // The weighted mean size.
  double MeanBytes() const;
  // One size, drawn with the entries' weights. entries must not be empty.
  uint64_t Draw(std::mt19937_64& rng) const;
};

// "4096", "4k"/"4K" (x 1024), "2m"/"2M" (x 1024^2). InvalidArgument for
// anything else, 0 included.
absl::StatusOr<uint64_t> ParseByteCount(std::string_view text);

// "WEIGHT:BYTES[,WEIGHT:BYTES...]", BYTES as ParseByteCount. InvalidArgument
// for an empty list, a missing colon, a weight of 0 or a bad number.
absl::StatusOr<SizeMix> ParseSizeMix(std::string_view text);

struct MessageOptions {
  std::string from = "loadgen@loadgen.test";
  // Each "%d" is replaced by a counter that goes up by one per recipient,
  // from 1.
  std::string to = "rcpt%d@sink.test";
  int recipients = 1;
  // The right-hand side of Message-IDs.
  std::string domain = "loadgen.test";
  // Makes Message-IDs unique across runs: "<run_id>.<sequence>@<domain>".
  std::string run_id = "0";
  SizeMix sizes = SizeMix::Fixed(1024);
};

class MessageFactory {
 public:
  MessageFactory(MessageOptions options, uint64_t seed);

  // Fills *message for message number `seq` (its Message-ID): sender, the
  // next `recipients` addresses, and content of a drawn size. Reuses
  // message's storage.
  void Make(uint64_t seq, engine::OutboundMessage* message);

  // The Message-ID Make() gives message `seq`, with angle brackets.
  std::string MessageId(uint64_t seq) const;

  const MessageOptions& options() const { return options_; }

 private:
  MessageOptions options_;
  std::mt19937_64 rng_;
  uint64_t next_recipient_ = 1;
  std::string date_;  // one Date: for the run
};

}  // namespace postern::bench

#endif  // POSTERN_BENCH_LOADGEN_MESSAGE_H_
