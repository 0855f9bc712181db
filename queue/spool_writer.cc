#include "queue/spool_writer.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace postern::queue {
namespace {

SpoolCompletion MakeCompletion(SpoolClient* client, uint64_t token, absl::Status status,
                               uint32_t batch_size, absl::Duration latency,
                               SpoolRecord record = {}) {
  SpoolCompletion c;
  c.client = client;
  c.token = token;
  c.status = std::move(status);
  c.batch_size = batch_size;
  c.latency = latency;
  c.record = std::move(record);
  return c;
}

}  // namespace

SpoolWriter::SpoolWriter(SpoolStore* store, SpoolWriterOptions options)
    : store_(store), options_(options) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    std::fprintf(stderr, "SpoolWriter: eventfd: %s\n", std::strerror(errno));
    std::abort();
  }
  thread_ = std::thread([this] { Run(); });
}

SpoolWriter::~SpoolWriter() {
  Stop();
  close(event_fd_);
}

void SpoolWriter::Submit(uint64_t token, SpoolRecord record, SpoolClient* client) {
  // A malformed record fails alone here instead of failing its whole batch.
  if (absl::Status valid = SpoolStore::ValidateRecord(record); !valid.ok()) {
    Refuse(client, token, std::move(valid), std::move(record));
    return;
  }
  const size_t bytes = record.body.size() + record.envelope.ByteSizeLong();
  Enqueue(Pending{client, token, Pending::kRecord, std::move(record), {}, bytes, {}, {}});
}

void SpoolWriter::SubmitMutation(uint64_t token, SpoolMutation mutation,
                                 std::vector<SpoolRecord> records, SpoolClient* client) {
  size_t bytes = mutation.envelope.ByteSizeLong();
  for (const SpoolRecord& r : records) {
    if (absl::Status valid = SpoolStore::ValidateRecord(r); !valid.ok()) {
      Refuse(client, token, std::move(valid));
      return;
    }
    bytes += r.body.size() + r.envelope.ByteSizeLong();
  }
  Enqueue(Pending{
      client, token, Pending::kMutation, {}, std::move(mutation), bytes, {}, std::move(records)});
}

void SpoolWriter::SubmitBarrier(uint64_t token, SpoolClient* client) {
  Enqueue(Pending{client, token, Pending::kBarrier, {}, {}, 0, {}, {}});
}

void SpoolWriter::Enqueue(Pending item) {
  item.submitted = std::chrono::steady_clock::now();
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      pending_bytes_.fetch_add(item.bytes, std::memory_order_relaxed);
      pending_.push_back(std::move(item));
      return;
    }
  }
  Refuse(item.client, item.token, absl::FailedPreconditionError("spool writer stopped"),
         std::move(item.record));
}

void SpoolWriter::Refuse(SpoolClient* client, uint64_t token, absl::Status status,
                         SpoolRecord record) {
  std::vector<SpoolCompletion> refused;
  refused.push_back(
      MakeCompletion(client, token, std::move(status), 0, absl::ZeroDuration(), std::move(record)));
  Post(std::move(refused));
}

std::vector<SpoolCompletion> SpoolWriter::TakeCompletions() {
  std::vector<SpoolCompletion> out;
  absl::MutexLock lock(&done_mu_);
  out.swap(done_);
  return out;
}

void SpoolWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void SpoolWriter::Post(std::vector<SpoolCompletion> completions) {
  {
    absl::MutexLock lock(&done_mu_);
    if (done_.empty()) {
      done_ = std::move(completions);
    } else {
      for (auto& c : completions) done_.push_back(std::move(c));
    }
  }
  const uint64_t one = 1;
  // Cannot fail short of a bug: the counter would need 2^64-2 unread posts.
  // EAGAIN (counter full) still leaves the fd readable, so nothing is lost.
  ssize_t n;
  do {
    n = write(event_fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

void SpoolWriter::Run() {
  std::vector<uint64_t> tokens;
  std::vector<SpoolClient*> clients;
  std::vector<std::chrono::steady_clock::time_point> submitted;
  std::vector<SpoolRecord> records;
  std::vector<SpoolMutation> mutations;
  // Per token: the index of its record in `records`, or -1 (mutations,
  // barriers), so each record goes back to its submitter.
  std::vector<int> record_of;
  for (;;) {
    size_t batch_bytes = 0;
    uint32_t messages = 0;
    tokens.clear();
    clients.clear();
    submitted.clear();
    records.clear();
    mutations.clear();
    record_of.clear();
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (pending_.empty()) return;  // stopping, and everything is written
      while (!pending_.empty() &&
             (tokens.empty() || batch_bytes + pending_.front().bytes <= options_.max_batch_bytes)) {
        Pending& p = pending_.front();
        batch_bytes += p.bytes;
        tokens.push_back(p.token);
        clients.push_back(p.client);
        submitted.push_back(p.submitted);
        record_of.push_back(p.kind == Pending::kRecord ? static_cast<int>(records.size()) : -1);
        if (p.kind == Pending::kRecord) {
          records.push_back(std::move(p.record));
          ++messages;
        } else if (p.kind == Pending::kMutation) {
          mutations.push_back(std::move(p.mutation));
          for (SpoolRecord& r : p.records) records.push_back(std::move(r));
        }
        pending_.pop_front();
      }
    }

    // A batch of barriers only writes nothing: its status is OK.
    const absl::Status status = store_->Apply(records, mutations);
    const auto durable = std::chrono::steady_clock::now();
    pending_bytes_.fetch_sub(batch_bytes, std::memory_order_relaxed);

    std::vector<SpoolCompletion> completions;
    completions.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      completions.push_back(MakeCompletion(clients[i], tokens[i], status, messages,
                                           absl::FromChrono(durable - submitted[i])));
      if (record_of[i] >= 0) completions.back().record = std::move(records[record_of[i]]);
    }
    Post(std::move(completions));
  }
}

}  // namespace postern::queue
