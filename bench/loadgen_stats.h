// Latency histograms and the load generator's totals and report.
//
// LatencyHistogram records values (microseconds in postern-loadgen) into
// log-linear buckets, as HdrHistogram does: values below 256 get a bucket
// each, above that every power of two is cut into 128 equal buckets, so a
// reported percentile is never more than 1/128 (0.8 %) above the true value
// and memory is fixed (about 58 KiB) whatever the range. Recording is a few
// shifts and an increment, cheap enough for every phase of every message.
//
// LoadgenTotals holds the counters of one run and renders them as the final
// JSON object (--json) and the human table.
//
// Threading: plain values with no synchronisation; postern-loadgen has one
// thread. Copyable.
#ifndef POSTERN_BENCH_LOADGEN_STATS_H_
#define POSTERN_BENCH_LOADGEN_STATS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace postern::bench {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void Record(uint64_t value);
  // Adds every value recorded in `other`.
  void Merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }

  // The nearest-rank percentile (p in [0, 100]): the smallest recorded value
  // v such that at least p % of the values are <= v, reported as the
  // highest value of v's bucket, capped to [min(), max()]. 0 when empty.
  uint64_t Percentile(double p) const;

  // Bucket arithmetic, public for tests.
  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketHighest(size_t index);

 private:
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

// What one run did. Latencies are in microseconds.
struct LoadgenTotals {
  uint64_t sent = 0;          // transactions begun (MAIL written)
  uint64_t acknowledged = 0;  // a 2xx to the end of the data
  // Messages not acknowledged, by the reply code that refused them (the
  // end-of-data reply, else the first refused MAIL/RCPT reply, else a 421).
  std::map<int, uint64_t> rejected;
  // Messages that were sent but got no reply at all (connection lost).
  uint64_t failed = 0;
  // Messages a connection was opened for that never started (it failed
  // before the transaction).
  uint64_t not_sent = 0;
  // Open loop: messages whose start time had come when the run ended but
  // that no connection was free to start. Not in any latency: a backlog
  // here means the target could not keep up with --rate.
  uint64_t overdue = 0;
  // Recipients refused inside acknowledged messages, by RCPT reply code.
  std::map<int, uint64_t> recipients_rejected;
  uint64_t recipients_accepted = 0;  // in acknowledged messages
  uint64_t bytes_acknowledged = 0;   // message content of acknowledged messages
  uint64_t connections = 0;          // TCP connections established
  // Connections that ended other than by our QUIT, by a fixed label
  // ("connect", "tls", "timeout", "closed", "protocol", "rejected", ...).
  std::map<std::string, uint64_t> connection_errors;
  uint64_t tls_handshakes = 0;  // completed
  uint64_t resumed_sessions = 0;
  double elapsed_s = 0;

  LatencyHistogram connect;
  LatencyHistogram tls_handshake;
  LatencyHistogram mail_to_data;     // MAIL written .. 354 (or BDAT may start)
  LatencyHistogram data_end_to_250;  // last content octet sent .. final reply
  LatencyHistogram message;          // intended start .. final reply

  uint64_t rejected_total() const;
  uint64_t connection_errors_total() const;

  // One JSON object (one line, then a newline).
  std::string Json() const;
  // The human summary: counts, rates and a latency table in milliseconds.
  std::string Table() const;
};

}  // namespace postern::bench

#endif  // POSTERN_BENCH_LOADGEN_STATS_H_
