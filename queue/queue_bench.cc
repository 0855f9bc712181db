// queue_bench: the queue's full life cycle of a message on the real disk:
// insert (group commit), schedule, scan, take, read back, remove.
//
//   bazel build -c opt //queue:queue_bench
//   bazel-bin/queue/queue_bench [--dir D] [--keep] [--json]
//       [--messages M] [--size BYTES] [--inflight K]
//       [--backlog N] [--backlog-size BYTES]
//       [--horizon-ms MS] [--rescan-ms MS] [--time-limit SECONDS]
//
// 1. Backlog (--backlog N, default 0): N messages due in a day written first
//    with SpoolStore::WriteBatch in large batches, like a deferred queue.
// 2. The measured loop, one thread playing the worker's event loop: K
//    messages in flight. Each is submitted through a SpoolWriter (due now);
//    when durable it goes to the Scheduler; the loop runs the scan protocol
//    as QueueManager does (BeginScan -> barrier -> ScanSchedule -> ScanDone),
//    takes due messages, reads envelope and body back as delivery does, and
//    removes the message (SubmitMutation remove=true, old_due_ms) as after a
//    successful delivery. Throughput counts messages removed per second.
// 3. After the loop: index scans over the next window, over the window full
//    of the run's tombstones, from time 0 and (with a backlog) over its first
//    window; then start-up as QueueManager::Recover does it on a reopened
//    spool: Open, CompactSchedule, first scan from 0, envelope walk. Each
//    scan is timed cold and warm.
//
// fsyncs are counted as writer batches: SpoolWriter adds 1 to its completion
// eventfd per batch (one SpoolStore::Apply, one synced WriteBatch), so the
// sum of the eventfd counters read is the number of batches. A batch of
// barriers only writes nothing; the start-up barrier is waited for before
// the clock starts, and the few barriers during the run ("index scans
// during the run") share batches with messages: at worst each adds one.
// Checked with strace: the WAL's fdatasync count equals this count.
// RocksDB's own syncs of SST, blob and MANIFEST files at flush are not
// counted (strace -f -e fdatasync shows them).
#include <poll.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/queue.pb.h"
#include "queue/queue_id.h"
#include "queue/scheduler.h"
#include "queue/spool_store.h"
#include "queue/spool_writer.h"

namespace postern::queue {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string dir;  // "" = a fresh temporary directory under /var/tmp
  bool keep = false;
  bool json = false;
  int messages = 100000;
  size_t size = 1024;
  int inflight = 256;
  int backlog = 0;
  size_t backlog_size = 0;  // 0 = same as size
  int64_t horizon_ms = SchedulerOptions{}.horizon_ms;
  int64_t rescan_ms = SchedulerOptions{}.rescan_ms;
  double time_limit_s = 900;
};

// One scan, timed cold (first) and warm (best of four repeats): the first
// iterator after the loop pays for opening freshly flushed files.
struct ScanTime {
  double first_ms = 0;
  double again_ms = 0;
};

struct Results {
  // Backlog.
  double backlog_s = 0;
  int backlog_batches = 0;
  // Loop.
  int done = 0;  // messages inserted, scheduled, read back and removed
  double loop_s = 0;
  uint64_t batches = 0;  // writer batches = WAL fsyncs
  int scans = 0;
  double scan_total_ms = 0, scan_max_ms = 0;
  double read_total_ms = 0;  // ReadEnvelope + ReadBody on the loop thread
  std::vector<double> insert_us, remove_us, life_us;
  int failed = 0, stale = 0;
  // After the loop.
  ScanTime scan_next, scan_tomb, scan_zero, scan_backlog;
  size_t scan_backlog_keys = 0;
  ScanTime scan_zero_reopened;
  // Start-up on a reopened spool.
  double open_ms = 0, compact_ms = 0, walk_ms = 0;
  ScanTime first_scan;
  uint64_t walk_envelopes = 0;
};

[[noreturn]] void Die(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "queue_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

void SetMs(google::protobuf::Timestamp* t, int64_t ms) {
  t->set_seconds(ms / 1000);
  t->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
}

SpoolRecord MakeRecord(QueueIdGenerator& ids, const std::string& body, int64_t due_ms) {
  SpoolRecord r;
  r.envelope.set_queue_id(ids.Next());
  r.envelope.set_shard(ids.shard());
  r.envelope.set_sender("loadgen@example.org");
  r.envelope.add_recipients()->set_address("sink@example.net");
  r.envelope.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  r.envelope.set_client_address("192.0.2.1");
  r.envelope.set_helo("loadgen.example.org");
  r.envelope.set_body_size(body.size());
  SetMs(r.envelope.mutable_schedule()->mutable_next_attempt(), due_ms);
  r.body = body;
  return r;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

ScanTime TimedScan(SpoolStore& store, int64_t from, int64_t to, size_t limit,
                   size_t* keys = nullptr) {
  ScanTime st;
  for (int i = 0; i < 5; ++i) {
    const auto t = Clock::now();
    auto entries = store.ScanSchedule(from, to, limit);
    const double ms = MsSince(t);
    if (!entries.ok()) Die("scan", entries.status());
    if (i == 0) {
      st.first_ms = ms;
      if (keys != nullptr) *keys = entries->size();
    } else {
      st.again_ms = i == 1 ? ms : std::min(st.again_ms, ms);
    }
  }
  return st;
}

void WriteBacklog(SpoolStore& store, QueueIdGenerator& ids, const Flags& f, Results& r) {
  const std::string body(f.backlog_size, 'b');
  // A day out, spread over an hour: a deferred queue, not one instant.
  const int64_t base = NowMs() + 24 * 3600 * 1000;
  const size_t max_batch_bytes = 16 << 20;
  const auto start = Clock::now();
  auto last_progress = start;
  int written = 0;
  std::vector<SpoolRecord> batch;
  while (written < f.backlog) {
    batch.clear();
    size_t bytes = 0;
    while (written + static_cast<int>(batch.size()) < f.backlog && batch.size() < 10000 &&
           (batch.empty() || bytes + body.size() <= max_batch_bytes)) {
      const int i = written + static_cast<int>(batch.size());
      batch.push_back(MakeRecord(ids, body, base + i % 3600000));
      bytes += body.size() + 200;
    }
    if (absl::Status s = store.WriteBatch(batch); !s.ok()) Die("backlog WriteBatch", s);
    written += static_cast<int>(batch.size());
    ++r.backlog_batches;
    if (Clock::now() - last_progress > std::chrono::seconds(5)) {
      last_progress = Clock::now();
      std::fprintf(stderr, "backlog: %d/%d written, %.0f msgs/s\n", written, f.backlog,
                   written / (MsSince(start) / 1000));
    }
  }
  r.backlog_s = MsSince(start) / 1000;
}

// Token layout: message index (or scan number) << 2 | kind.
enum Kind : uint64_t { kInsert = 0, kRemove = 1, kBarrier = 2 };
uint64_t Token(uint64_t n, Kind k) { return n << 2 | k; }

// The measured loop (see the file comment). Leaves the scheduler's loaded
// window in *loaded_until for the scans that follow.
void RunLoop(SpoolStore& store, QueueIdGenerator& ids, const Flags& f, Results& r,
             int64_t* loaded_until) {
  SchedulerOptions so;
  so.horizon_ms = f.horizon_ms;
  so.rescan_ms = f.rescan_ms;
  Scheduler scheduler(so);
  SpoolWriter writer(&store);
  const std::string body(f.size, 'x');
  const size_t max_active = 1000;  // QueueManagerOptions::max_active

  std::vector<std::string> id_of(f.messages);
  std::vector<int64_t> due_of(f.messages);
  std::vector<Clock::time_point> submitted_at(f.messages);
  std::unordered_map<std::string, uint32_t> index_of;  // taken, not yet removed
  r.insert_us.reserve(f.messages);
  r.remove_us.reserve(f.messages);
  r.life_us.reserve(f.messages);

  bool scan_waiting = false;
  int64_t scan_from = 0, scan_to = 0;
  uint64_t batches = 0;
  auto wait_and_take = [&](int timeout_ms) {
    pollfd p{writer.completion_eventfd(), POLLIN, 0};
    poll(&p, 1, timeout_ms);
    uint64_t posts = 0;  // batches posted since the last read
    if (read(writer.completion_eventfd(), &posts, sizeof(posts)) == sizeof(posts)) {
      batches += posts;
    }
    return writer.TakeCompletions();
  };
  // QueueManager::OnWriteDone for a scan barrier.
  auto run_scan = [&] {
    const auto t = Clock::now();
    auto entries = store.ScanSchedule(scan_from, scan_to, so.scan_limit);
    const double ms = MsSince(t);
    scan_waiting = false;
    ++r.scans;
    r.scan_total_ms += ms;
    r.scan_max_ms = std::max(r.scan_max_ms, ms);
    if (entries.ok()) {
      scheduler.ScanDone(*entries, true);
    } else {
      scheduler.ScanDone({}, false);
    }
  };
  // QueueManager::Tick: start a scan behind a barrier, then attempt what is due.
  auto tick = [&] {
    const int64_t now_ms = NowMs();
    if (!scan_waiting && scheduler.BeginScan(now_ms, &scan_from, &scan_to)) {
      scan_waiting = true;
      writer.SubmitBarrier(Token(r.scans, kBarrier));
    }
    const size_t active = scheduler.in_flight_count();
    const size_t room = active < max_active ? max_active - active : 0;
    for (const ScheduleEntry& e : scheduler.TakeDue(now_ms, room)) {
      // QueueManager::StartAttempt: envelope, staleness check, body.
      const auto t = Clock::now();
      auto envelope = store.ReadEnvelope(e.queue_id);
      if (!envelope.ok() || SpoolStore::DueMs(*envelope) != e.due_ms) {
        ++r.stale;
        scheduler.Finished(e.queue_id);
        continue;
      }
      auto read_body = store.ReadBody(e.queue_id);
      r.read_total_ms += MsSince(t);
      if (!read_body.ok()) Die("read body", read_body.status());
      if (read_body->size() != envelope->body_size()) {
        Die("read body", absl::DataLossError("body size differs from the envelope"));
      }
      auto it = index_of.find(e.queue_id);
      if (it == index_of.end()) Die("take due", absl::InternalError("unknown id " + e.queue_id));
      // The delivered message leaves the queue (QueueManager::FinishAttempt).
      SpoolMutation m;
      m.envelope.set_queue_id(e.queue_id);
      m.remove = true;
      m.old_due_ms = e.due_ms;
      writer.SubmitMutation(Token(it->second, kRemove), std::move(m));
    }
  };

  // Start-up scan (from time 0), waited for so the clock starts clean.
  tick();
  while (scan_waiting) {
    for (const SpoolCompletion& c : wait_and_take(1000)) {
      if ((c.token & 3) == kBarrier) run_scan();
    }
  }
  r.scans = 0;
  r.scan_total_ms = r.scan_max_ms = 0;
  batches = 0;

  int submitted = 0, active = 0;
  const auto start = Clock::now();
  auto last_progress = start;
  bool stop_submitting = false;
  while (active > 0 || (submitted < f.messages && !stop_submitting)) {
    while (!stop_submitting && active < f.inflight && submitted < f.messages) {
      const int64_t due = NowMs();
      SpoolRecord record = MakeRecord(ids, body, due);
      id_of[submitted] = record.envelope.queue_id();
      due_of[submitted] = due;
      submitted_at[submitted] = Clock::now();
      writer.Submit(Token(submitted, kInsert), std::move(record));
      ++submitted;
      ++active;
    }
    for (const SpoolCompletion& c : wait_and_take(1000)) {
      const uint64_t n = c.token >> 2;
      switch (c.token & 3) {
        case kInsert:
          r.insert_us.push_back(absl::ToDoubleMicroseconds(c.latency));
          if (!c.status.ok()) {
            ++r.failed;
            --active;
            break;
          }
          // QueueManager::OnSpooled.
          index_of.emplace(id_of[n], static_cast<uint32_t>(n));
          scheduler.Schedule(due_of[n], id_of[n]);
          break;
        case kRemove:
          r.remove_us.push_back(absl::ToDoubleMicroseconds(c.latency));
          // QueueManager::OnWriteDone for an attempt that removed the message.
          scheduler.Finished(id_of[n]);
          if (!c.status.ok()) {
            ++r.failed;
          } else {
            scheduler.Cancel(id_of[n]);
            r.life_us.push_back(
                std::chrono::duration<double, std::micro>(Clock::now() - submitted_at[n]).count());
            ++r.done;
          }
          index_of.erase(id_of[n]);
          --active;
          break;
        case kBarrier:
          run_scan();
          break;
      }
    }
    tick();
    if (Clock::now() - last_progress > std::chrono::seconds(5)) {
      last_progress = Clock::now();
      const double s = MsSince(start) / 1000;
      std::fprintf(stderr, "loop: %d/%d done, %.0f msgs/s, %.1f s\n", r.done, f.messages,
                   r.done / s, s);
      if (!stop_submitting && s > f.time_limit_s) {
        std::fprintf(stderr, "loop: time limit reached, draining\n");
        stop_submitting = true;
      }
    }
  }
  r.loop_s = MsSince(start) / 1000;
  r.batches = batches;
  *loaded_until = scheduler.loaded_until();
  writer.Stop();
}

void MeasureAfter(std::unique_ptr<SpoolStore>& store, const Flags& f, int64_t run_start_ms,
                  int64_t loaded_until, Results& r) {
  const size_t limit = SchedulerOptions{}.scan_limit;
  const int64_t now = NowMs();
  // The window the scheduler reads next: behind the tombstones.
  r.scan_next = TimedScan(*store, loaded_until, now + f.horizon_ms, limit);
  // The window holding every key the run deleted.
  r.scan_tomb = TimedScan(*store, run_start_ms - 1, now + 1, limit);
  // What a start-up scan would cost without compacting first.
  r.scan_zero = TimedScan(*store, 0, now + f.horizon_ms, limit);
  if (f.backlog > 0) {
    // The first window of the backlog, as when it becomes due.
    r.scan_backlog = TimedScan(*store, now + f.horizon_ms, INT64_MAX, limit, &r.scan_backlog_keys);
  }
  // Start-up as QueueManager::Recover does it, on a reopened spool: compact
  // the index, first scan from 0, walk the envelopes.
  const std::string dir = store->dir();
  store.reset();
  auto t = Clock::now();
  auto reopened = SpoolStore::Open(dir);
  if (!reopened.ok()) Die("reopen", reopened.status());
  store = std::move(*reopened);
  r.open_ms = MsSince(t);
  // What the first scan would cost without the compaction.
  r.scan_zero_reopened = TimedScan(*store, 0, NowMs() + f.horizon_ms, limit);
  t = Clock::now();
  if (absl::Status s = store->CompactSchedule(); !s.ok()) Die("compact", s);
  r.compact_ms = MsSince(t);
  r.first_scan = TimedScan(*store, 0, NowMs() + f.horizon_ms, limit);
  t = Clock::now();
  absl::Status walk = store->ForEachEnvelope([&r](const v1::Envelope&) {
    ++r.walk_envelopes;
    return absl::OkStatus();
  });
  if (!walk.ok()) Die("walk", walk);
  r.walk_ms = MsSince(t);
}

// Appends `"key": value` to a JSON object under construction.
void Json(std::string& out, const char* key, double value, int decimals = 3) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%s\"%s\": %.*f", out.size() > 1 ? ", " : "", key, decimals,
                value);
  out += buf;
}

void Report(const Flags& f, const std::string& dir, Results& r) {
  const double rate = r.loop_s > 0 ? r.done / r.loop_s : 0;
  const double per_k = r.done > 0 ? 1000.0 * r.batches / r.done : 0;
  // Every message joins two batches (its insert and its removal).
  const double ops_per_batch = r.batches > 0 ? 2.0 * r.done / r.batches : 0;
  const double msgs_per_fsync = r.batches > 0 ? 1.0 * r.done / r.batches : 0;
  const double ins50 = Percentile(r.insert_us, 0.50) / 1000;
  const double ins99 = Percentile(r.insert_us, 0.99) / 1000;
  const double rem50 = Percentile(r.remove_us, 0.50) / 1000;
  const double rem99 = Percentile(r.remove_us, 0.99) / 1000;
  const double life50 = Percentile(r.life_us, 0.50) / 1000;
  const double life99 = Percentile(r.life_us, 0.99) / 1000;
  const double backlog_rate = r.backlog_s > 0 ? f.backlog / r.backlog_s : 0;
  struct NamedScan {
    const char* key;
    const char* label;
    const ScanTime* t;
  };
  std::vector<NamedScan> scans = {
      {"scan_next_window", "scan: next window [loaded_until, +horizon)", &r.scan_next},
      {"scan_deleted_window", "scan: the run's window (its tombstones)", &r.scan_tomb},
      {"scan_from_zero", "scan: from 0, not compacted", &r.scan_zero},
  };
  if (f.backlog > 0) {
    scans.push_back({"scan_backlog_window", "scan: first backlog window", &r.scan_backlog});
  }
  scans.push_back({"startup_scan_uncompacted", "start-up: scan from 0 before compaction",
                   &r.scan_zero_reopened});
  scans.push_back({"startup_first_scan", "start-up: first scan from 0 (compacted)", &r.first_scan});

  if (f.json) {
    std::string out = "{";
    Json(out, "messages", f.messages, 0);
    Json(out, "size", f.size, 0);
    Json(out, "inflight", f.inflight, 0);
    Json(out, "backlog", f.backlog, 0);
    Json(out, "backlog_size", f.backlog_size, 0);
    Json(out, "backlog_s", r.backlog_s);
    Json(out, "backlog_msgs_per_s", backlog_rate, 0);
    Json(out, "backlog_batches", r.backlog_batches, 0);
    Json(out, "done", r.done, 0);
    Json(out, "failed", r.failed, 0);
    Json(out, "stale", r.stale, 0);
    Json(out, "loop_s", r.loop_s);
    Json(out, "msgs_per_s", rate, 1);
    Json(out, "fsyncs", r.batches, 0);
    Json(out, "fsyncs_per_1000_msgs", per_k, 2);
    Json(out, "msgs_per_fsync", msgs_per_fsync, 2);
    Json(out, "ops_per_fsync", ops_per_batch, 2);
    Json(out, "insert_p50_ms", ins50);
    Json(out, "insert_p99_ms", ins99);
    Json(out, "remove_p50_ms", rem50);
    Json(out, "remove_p99_ms", rem99);
    Json(out, "life_p50_ms", life50);
    Json(out, "life_p99_ms", life99);
    Json(out, "read_back_total_ms", r.read_total_ms, 1);
    Json(out, "scans_during_run", r.scans, 0);
    Json(out, "scan_during_run_total_ms", r.scan_total_ms);
    Json(out, "scan_during_run_max_ms", r.scan_max_ms);
    for (const NamedScan& n : scans) {
      Json(out, (std::string(n.key) + "_first_ms").c_str(), n.t->first_ms);
      Json(out, (std::string(n.key) + "_again_ms").c_str(), n.t->again_ms);
    }
    Json(out, "scan_backlog_keys", r.scan_backlog_keys, 0);
    Json(out, "startup_open_ms", r.open_ms, 1);
    Json(out, "startup_compact_ms", r.compact_ms);
    Json(out, "startup_walk_ms", r.walk_ms, 1);
    Json(out, "startup_walk_envelopes", r.walk_envelopes, 0);
    std::printf("%s}\n", out.c_str());
    return;
  }
  std::printf("queue_bench: %d messages of %zu bytes, %d in flight, backlog %d x %zu bytes\n",
              f.messages, f.size, f.inflight, f.backlog, f.backlog_size);
  std::printf("dir %s\n", dir.c_str());
  if (f.backlog > 0) {
    std::printf("%-44s %10.2f s  (%.0f msgs/s, %d batches)\n", "backlog write", r.backlog_s,
                backlog_rate, r.backlog_batches);
  }
  std::printf("%-44s %10.0f msgs/s  (%d done, %d failed, %d stale, %.2f s)\n",
              "insert+schedule+read+remove", rate, r.done, r.failed, r.stale, r.loop_s);
  std::printf("%-44s %10.2f  (%llu batches)\n", "fsyncs per 1,000 messages", per_k,
              static_cast<unsigned long long>(r.batches));
  std::printf("%-44s %10.2f  (%.2f inserts+removes)\n", "messages per fsync", msgs_per_fsync,
              ops_per_batch);
  std::printf("%-44s %10.2f / %.2f ms\n", "insert submit->durable p50 / p99", ins50, ins99);
  std::printf("%-44s %10.2f / %.2f ms\n", "remove submit->durable p50 / p99", rem50, rem99);
  std::printf("%-44s %10.2f / %.2f ms\n", "submit->removed p50 / p99", life50, life99);
  std::printf("%-44s %10.1f ms\n", "envelope+body reads on the loop (total)", r.read_total_ms);
  std::printf("%-44s %10d  (%.3f ms total, %.3f ms max)\n", "index scans during the run", r.scans,
              r.scan_total_ms, r.scan_max_ms);
  std::printf("%-44s %10s   %s\n", "", "first ms", "again ms (best of 4)");
  for (const NamedScan& n : scans) {
    std::printf("%-44s %10.3f   %.3f\n", n.label, n.t->first_ms, n.t->again_ms);
  }
  if (f.backlog > 0) {
    std::printf("%-44s %10zu\n", "  keys in the backlog window", r.scan_backlog_keys);
  }
  std::printf("%-44s %10.1f ms\n", "start-up: Open (WAL replay)", r.open_ms);
  std::printf("%-44s %10.3f ms\n", "start-up: CompactSchedule", r.compact_ms);
  std::printf("%-44s %10.1f ms  (%llu envelopes)\n", "start-up: envelope walk (Recover)", r.walk_ms,
              static_cast<unsigned long long>(r.walk_envelopes));
}

int Main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--keep") {
      f.keep = true;
      continue;
    }
    if (flag == "--json") {
      f.json = true;
      continue;
    }
    if (flag == "--help" || i + 1 >= argc) {
      std::fprintf(stderr,
                   "usage: queue_bench [--dir D] [--keep] [--json] [--messages M] [--size B]\n"
                   "  [--inflight K] [--backlog N] [--backlog-size B] [--horizon-ms MS]\n"
                   "  [--rescan-ms MS] [--time-limit S]\n");
      return flag == "--help" ? 0 : 1;
    }
    const std::string value = argv[++i];
    bool ok = true;
    if (flag == "--dir") {
      f.dir = value;
    } else if (flag == "--messages") {
      ok = absl::SimpleAtoi(value, &f.messages) && f.messages > 0;
    } else if (flag == "--size") {
      ok = absl::SimpleAtoi(value, &f.size);
    } else if (flag == "--inflight") {
      ok = absl::SimpleAtoi(value, &f.inflight) && f.inflight > 0;
    } else if (flag == "--backlog") {
      ok = absl::SimpleAtoi(value, &f.backlog) && f.backlog >= 0;
    } else if (flag == "--backlog-size") {
      ok = absl::SimpleAtoi(value, &f.backlog_size);
    } else if (flag == "--horizon-ms") {
      ok = absl::SimpleAtoi(value, &f.horizon_ms) && f.horizon_ms > 0;
    } else if (flag == "--rescan-ms") {
      ok = absl::SimpleAtoi(value, &f.rescan_ms) && f.rescan_ms >= 0;
    } else if (flag == "--time-limit") {
      ok = absl::SimpleAtod(value, &f.time_limit_s) && f.time_limit_s > 0;
    } else {
      std::fprintf(stderr, "queue_bench: unknown flag %s\n", flag.c_str());
      return 1;
    }
    if (!ok) {
      std::fprintf(stderr, "queue_bench: bad value for %s: %s\n", flag.c_str(), value.c_str());
      return 1;
    }
  }
  if (f.backlog_size == 0) f.backlog_size = f.size;

  // A directory of our own: refuse to write into (and later delete) one
  // that holds anything.
  std::error_code ec;
  if (f.dir.empty()) {
    char tmpl[] = "/var/tmp/postern-queue-bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("queue_bench: mkdtemp");
      return 1;
    }
    f.dir = tmpl;
  } else if (std::filesystem::exists(f.dir, ec) && !std::filesystem::is_empty(f.dir, ec)) {
    std::fprintf(stderr, "queue_bench: %s is not empty\n", f.dir.c_str());
    return 1;
  }
  std::filesystem::create_directories(f.dir, ec);

  // Bodies may be written twice (WAL, then blob/SST at flush) and the WAL
  // lives until flush: ask for 3x the payload.
  const double need = 3.0 * (static_cast<double>(f.backlog) * (f.backlog_size + 300) +
                             static_cast<double>(f.messages) * (f.size + 300));
  struct statvfs vfs;
  if (statvfs(f.dir.c_str(), &vfs) == 0 &&
      static_cast<double>(vfs.f_bavail) * vfs.f_frsize < need) {
    std::fprintf(stderr, "queue_bench: %s has %.1f GB free, this run wants %.1f GB (3x data)\n",
                 f.dir.c_str(), static_cast<double>(vfs.f_bavail) * vfs.f_frsize / 1e9, need / 1e9);
    if (!f.keep) std::filesystem::remove_all(f.dir, ec);
    return 2;
  }

  const std::string spool = f.dir + "/spool";
  auto opened = SpoolStore::Open(spool);
  if (!opened.ok()) Die("open " + spool, opened.status());
  std::unique_ptr<SpoolStore> store = std::move(*opened);
  QueueIdGenerator ids(1);
  Results r;
  if (f.backlog > 0) WriteBacklog(*store, ids, f, r);
  const int64_t run_start_ms = NowMs();
  int64_t loaded_until = 0;
  RunLoop(*store, ids, f, r, &loaded_until);
  std::fprintf(stderr, "loop done; measuring scans and start-up\n");
  MeasureAfter(store, f, run_start_ms, loaded_until, r);
  store.reset();
  Report(f, f.dir, r);
  if (!f.keep) std::filesystem::remove_all(f.dir, ec);
  return r.failed == 0 && r.stale == 0 ? 0 : 3;
}

}  // namespace
}  // namespace postern::queue

int main(int argc, char** argv) { return postern::queue::Main(argc, argv); }
