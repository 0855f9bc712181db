// spool_writer_bench: group-commit throughput of SpoolWriter on the real disk.
//
//   bazel run -c opt //queue:spool_writer_bench -- [--dir D] [--messages N]
//       [--size BYTES] [--inflight K[,K...]]
//
// One thread plays the event loop: it keeps K messages in flight (K SMTP
// sessions each waiting for its 250 before sending the next message), waits
// on the completion eventfd, and submits a new message per completion.
// K = 0 means "burst": all N submitted at once. Prints messages/s, mean
// batch size and latency percentiles per K.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "queue/queue_id.h"
#include "queue/spool_store.h"
#include "queue/spool_writer.h"

namespace postern::queue {
namespace {

struct Result {
  double msgs_per_s = 0;
  double mean_batch = 0;  // messages per fsync
  absl::Duration p50, p99;
  size_t failed = 0;
};

Result RunOnce(const std::string& dir, int messages, size_t size, int inflight) {
  std::filesystem::remove_all(dir);
  auto store = SpoolStore::Open(dir);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  QueueIdGenerator ids(1);
  const std::string body(size, 'x');
  auto make = [&] {
    SpoolRecord r;
    r.envelope.set_queue_id(ids.Next());
    r.envelope.set_sender("loadgen@example.org");
    r.envelope.add_recipients()->set_address("sink@example.net");
    r.envelope.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
    r.envelope.set_body_size(size);
    r.body = body;
    return r;
  };

  Result result;
  SpoolWriter writer(store->get());
  std::vector<absl::Duration> latencies;
  latencies.reserve(messages);
  double batches = 0;  // each message of a batch of b adds 1/b
  int submitted = 0;
  const absl::Time start = absl::Now();
  const int initial = inflight == 0 ? messages : std::min(inflight, messages);
  for (; submitted < initial; ++submitted) writer.Submit(submitted, make());
  while (latencies.size() < static_cast<size_t>(messages)) {
    pollfd p{writer.completion_eventfd(), POLLIN, 0};
    poll(&p, 1, 1000);
    uint64_t counter;
    if (read(writer.completion_eventfd(), &counter, sizeof(counter)) < 0) continue;
    for (const SpoolCompletion& c : writer.TakeCompletions()) {
      latencies.push_back(c.latency);
      batches += 1.0 / std::max<uint32_t>(c.batch_size, 1);
      if (!c.status.ok()) ++result.failed;
      if (submitted < messages) {
        writer.Submit(submitted, make());
        ++submitted;
      }
    }
  }
  const absl::Duration elapsed = absl::Now() - start;
  writer.Stop();
  std::sort(latencies.begin(), latencies.end());
  result.msgs_per_s = messages / absl::ToDoubleSeconds(elapsed);
  result.mean_batch = messages / batches;
  result.p50 = latencies[latencies.size() / 2];
  result.p99 = latencies[latencies.size() * 99 / 100];
  return result;
}

}  // namespace
}  // namespace postern::queue

int main(int argc, char** argv) {
  std::string dir = "/tmp/postern-spool-bench";
  int messages = 20000;
  size_t size = 1024;
  std::vector<int> inflight = {0, 1, 16, 64, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--dir") {
      dir = value;
    } else if (flag == "--messages") {
      messages = std::atoi(value.c_str());
    } else if (flag == "--size") {
      size = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--inflight") {
      inflight.clear();
      for (auto part : absl::StrSplit(value, ',')) {
        int k = 0;
        if (absl::SimpleAtoi(part, &k)) inflight.push_back(k);
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  std::printf("%d messages of %zu bytes, dir %s\n", messages, size, dir.c_str());
  std::printf("%9s %10s %11s %10s %10s %7s\n", "inflight", "msgs/s", "mean batch", "p50 ms",
              "p99 ms", "failed");
  for (int k : inflight) {
    auto r = postern::queue::RunOnce(dir, messages, size, k);
    std::printf("%9s %10.0f %11.1f %10.2f %10.2f %7zu\n",
                k == 0 ? "burst" : std::to_string(k).c_str(), r.msgs_per_s, r.mean_batch,
                absl::ToDoubleMilliseconds(r.p50), absl::ToDoubleMilliseconds(r.p99), r.failed);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
