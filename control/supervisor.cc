#include "control/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/log.h"

namespace postern::control {
namespace {

constexpr int64_t kMinBackoffMs = 100;
constexpr int64_t kMaxBackoffMs = 30000;
// A worker that stayed up this long has its backoff reset.
constexpr int64_t kStableMs = 60000;
// Past the drain deadline, workers get this long to close their spool
// before they are killed.
constexpr int64_t kKillGraceMs = 5000;
constexpr int64_t kTicketKeyRotationMs = 3600 * 1000;

int64_t NowMs() { return MonotonicMs(); }

}  // namespace

struct Supervisor::Worker {
  uint32_t shard = 0;
  pid_t pid = -1;
  int ipc_fd = -1;
  std::unique_ptr<metrics::MetricRegion> region;
  ipc::FrameReader reader;
  std::atomic<bool> ready{false};
  int64_t started_ms = 0;
  int64_t restart_at_ms = -1;  // >= 0: waiting to restart
  int64_t backoff_ms = kMinBackoffMs;
  bool drained = false;
  uint64_t applied_version = 0;
  uint64_t refused_version = 0;
  std::string refused_error;
};

Supervisor::Supervisor(config::v1::Config config, SupervisorOptions options)
    : config_(std::move(config)), options_(std::move(options)) {}

Supervisor::~Supervisor() {
  for (auto& w : workers_) {
    if (w->ipc_fd >= 0) close(w->ipc_fd);
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status Supervisor::Prepare() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return absl::ErrnoToStatus(errno, "eventfd");
  for (uint32_t i = 0; i < options_.workers; ++i) {
    auto w = std::make_unique<Worker>();
    w->shard = i;
    auto region = metrics::MetricRegion::Create();
    if (!region.ok()) return region.status();
    w->region = std::move(*region);
    workers_.push_back(std::move(w));
  }
  return absl::OkStatus();
}

bool Supervisor::ready() const {
  if (workers_.empty()) return false;
  return std::all_of(workers_.begin(), workers_.end(),
                     [](const auto& w) { return w->ready.load(std::memory_order_relaxed); });
}

admin::v1::GetStatusResponse Supervisor::Status() const {
  admin::v1::GetStatusResponse out;
  {
    absl::MutexLock lock(&status_mu_);
    out = status_;
  }
  // Counters are read live from shared memory.
  for (auto& ws : *out.mutable_workers()) {
    const metrics::MetricRegion* r = workers_[ws.shard()]->region.get();
    ws.set_restarts(r->Get(metrics::kWorkerRestarts, 0));
    ws.set_spool_messages(r->Get(metrics::kSpoolMessages, 0));
  }
  out.set_ready(ready());
  return out;
}

void Supervisor::PublishStatus() {
  admin::v1::GetStatusResponse next;
  next.set_node_name(config_.node().name());
  next.set_config_version(config_version_);
  next.set_draining(draining_);
  for (const auto& w : workers_) {
    admin::v1::WorkerStatus* ws = next.add_workers();
    ws->set_shard(w->shard);
    ws->set_pid(w->pid > 0 ? static_cast<uint32_t>(w->pid) : 0);
    ws->set_config_version(w->applied_version);
    ws->set_refused_config_version(w->refused_version);
    ws->set_refused_error(w->refused_error);
    if (w->pid > 0) {
      ws->set_state(w->ready ? admin::v1::WORKER_STATE_READY : admin::v1::WORKER_STATE_STARTING);
    } else {
      ws->set_state(w->restart_at_ms >= 0 ? admin::v1::WORKER_STATE_RESTARTING
                                          : admin::v1::WORKER_STATE_STOPPED);
    }
  }
  absl::MutexLock lock(&status_mu_);
  status_ = std::move(next);
  status_generation_ = applied_generation_;
  status_changed_.SignalAll();
}

void Supervisor::SubmitConfig(config::v1::Config config, uint64_t generation) {
  {
    absl::MutexLock lock(&submit_mu_);
    if (generation <= submitted_generation_) return;
    submitted_generation_ = generation;
    submitted_ = std::make_unique<config::v1::Config>(std::move(config));
  }
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && write(wake_fd_, &one, sizeof one) < 0) {
    // EAGAIN only: the loop is awake anyway.
  }
}

admin::v1::Rollout Supervisor::WaitForConfig(uint64_t generation, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&status_mu_);
  admin::v1::Rollout out;
  while (true) {
    out.Clear();
    bool pending = false;
    if (status_generation_ < generation) {
      pending = true;
      for (const auto& ws : status_.workers()) {
        auto* r = out.add_workers();
        r->set_shard(ws.shard());
        r->set_state(admin::v1::ROLLOUT_STATE_PENDING);
      }
    } else {
      const uint64_t version = status_.config_version();
      out.set_config_version(version);
      for (const auto& ws : status_.workers()) {
        auto* r = out.add_workers();
        r->set_shard(ws.shard());
        if (ws.config_version() >= version) {
          r->set_state(admin::v1::ROLLOUT_STATE_APPLIED);
        } else if (ws.refused_config_version() >= version) {
          r->set_state(admin::v1::ROLLOUT_STATE_REFUSED);
          r->set_error(ws.refused_error());
        } else if (ws.pid() == 0) {
          r->set_state(admin::v1::ROLLOUT_STATE_NOT_RUNNING);
        } else {
          r->set_state(admin::v1::ROLLOUT_STATE_PENDING);
          pending = true;
        }
      }
    }
    if (!pending) return out;
    if (status_changed_.WaitWithDeadline(&status_mu_, deadline)) return out;  // timed out
  }
}

void Supervisor::ApplySubmittedConfig() {
  std::unique_ptr<config::v1::Config> next;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&submit_mu_);
    if (submitted_ == nullptr || submitted_generation_ <= applied_generation_) return;
    next = std::move(submitted_);
    generation = submitted_generation_;
  }
  config_ = std::move(*next);
  applied_generation_ = generation;
  SendNewConfig();
}

void Supervisor::SendNewConfig() {
  ++config_version_;
  log::LogEvent("reloaded").Add("version", static_cast<int64_t>(config_version_)).Emit();
  for (auto& w : workers_) {
    if (w->ipc_fd >= 0) SendSetup(w.get(), /*reconfigure=*/true);
  }
  PublishStatus();
}

uint32_t Supervisor::WorkerForShard(uint32_t shard) const {
  return options_.workers == 0 ? 0 : shard % options_.workers;
}

std::vector<uint32_t> Supervisor::AdoptedShards(const std::string& data_dir, uint32_t workers,
                                                uint32_t worker) {
  std::vector<uint32_t> out;
  if (workers == 0) return out;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(data_dir) / "spool", ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string name = entry.path().filename().string();
    uint32_t shard = 0;
    auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), shard);
    if (err != std::errc() || end != name.data() + name.size() || shard > 0xFF) continue;
    if (shard >= workers && shard % workers == worker) out.push_back(shard);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<absl::StatusOr<queue::v1::QueueReply>> Supervisor::Forward(
    const std::vector<Call>& calls, absl::Duration timeout) {
  std::vector<uint64_t> ids;
  ids.reserve(calls.size());
  {
    absl::MutexLock lock(&queue_mu_);
    for (const Call& call : calls) {
      const uint64_t id = next_request_id_++;
      ids.push_back(id);
      PendingQueueRequest& p = pending_[id];
      p.worker = call.worker;
      if (stopped_ || call.worker >= options_.workers) {
        p.done = true;
        p.result = absl::UnavailableError(stopped_ ? "the node is stopping"
                                                   : absl::StrCat("no worker ", call.worker));
        continue;
      }
      ipc::v1::SupervisorToWorker msg;
      msg.mutable_queue_request()->set_request_id(id);
      *msg.mutable_queue_request()->mutable_request() = call.request;
      outbox_.push_back({call.worker, id, msg.SerializeAsString()});
    }
  }
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof one) < 0) {
    // EAGAIN only (the counter is saturated): the loop is awake anyway.
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&queue_mu_);
  auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
    for (uint64_t id : ids) {
      if (!pending_[id].done) return false;
    }
    return true;
  };
  while (!all_done()) {
    if (queue_done_.WaitWithDeadline(&queue_mu_, deadline)) break;  // timed out
  }
  std::vector<absl::StatusOr<queue::v1::QueueReply>> out;
  out.reserve(ids.size());
  for (uint64_t id : ids) {
    auto it = pending_.find(id);
    if (it->second.done) {
      out.push_back(std::move(it->second.result));
    } else {
      out.push_back(absl::UnavailableError(absl::StrCat(
          "worker ", it->second.worker, " did not answer within ", absl::FormatDuration(timeout))));
    }
    // A late answer finds no entry and is dropped; so is a request still in
    // the outbox.
    pending_.erase(it);
  }
  return out;
}

void Supervisor::FlushQueueOutbox() {
  std::deque<OutgoingQueueRequest> batch;
  {
    absl::MutexLock lock(&queue_mu_);
    batch.swap(outbox_);
  }
  for (OutgoingQueueRequest& o : batch) {
    {
      absl::MutexLock lock(&queue_mu_);
      auto it = pending_.find(o.request_id);
      if (it == pending_.end() || it->second.done) continue;  // the caller gave up
    }
    Worker* w = workers_[o.worker].get();
    absl::Status st =
        w->ipc_fd >= 0
            ? ipc::WriteFrame(w->ipc_fd, o.frame)
            : absl::UnavailableError(absl::StrCat("worker ", w->shard, " is not running"));
    absl::MutexLock lock(&queue_mu_);
    auto it = pending_.find(o.request_id);
    if (it == pending_.end()) continue;
    if (st.ok()) {
      it->second.sent = true;
    } else {
      it->second.done = true;
      it->second.result = absl::UnavailableError(st.message());
      queue_done_.SignalAll();
    }
  }
}

void Supervisor::CompleteQueueRequest(uint32_t worker, ipc::v1::WorkerQueueReply reply) {
  absl::MutexLock lock(&queue_mu_);
  auto it = pending_.find(reply.request_id());
  // Unknown: the caller timed out. Another worker's id: a bug, never trusted.
  if (it == pending_.end() || it->second.worker != worker || it->second.done) return;
  it->second.done = true;
  it->second.result = std::move(*reply.mutable_reply());
  queue_done_.SignalAll();
}

void Supervisor::FailQueueRequests(uint32_t worker, const std::string& why) {
  absl::MutexLock lock(&queue_mu_);
  FailQueueRequestsLocked(worker, why);
}

void Supervisor::FailQueueRequestsLocked(uint32_t worker, const std::string& why) {
  bool any = false;
  for (auto& [id, p] : pending_) {
    if (p.done) continue;
    // A request not yet sent is still in the outbox and goes to the next
    // process of that worker (or fails there if none runs).
    if (worker != kAllWorkers && (p.worker != worker || !p.sent)) continue;
    p.done = true;
    p.result = absl::UnavailableError(why);
    any = true;
  }
  if (any) queue_done_.SignalAll();
}

std::vector<const metrics::MetricRegion*> Supervisor::regions() const {
  std::vector<const metrics::MetricRegion*> out;
  for (const auto& w : workers_) out.push_back(w->region.get());
  return out;
}

absl::Status Supervisor::Spawn(Worker* w) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::ErrnoToStatus(errno, "socketpair");
  }
  int metrics_fd = w->region->fd();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    return absl::ErrnoToStatus(e, "fork");
  }
  if (pid == 0) {
    // Child: fds 3 and 4 carry the channel and the metrics region; signals
    // blocked for posternd's signalfd must not stay blocked in the worker.
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(static_cast<int>(w->shard % static_cast<uint32_t>(cpus)), &set);
      sched_setaffinity(0, sizeof set, &set);  // best effort: containers may forbid it
    }
    int ipc = fcntl(sv[1], F_DUPFD, 10);
    int met = fcntl(metrics_fd, F_DUPFD, 10);
    dup2(ipc, 3);
    dup2(met, 4);
    std::string bin = options_.worker_binary;
    char arg0[] = "postern-worker";
    char arg1[] = "--ipc-fd=3";
    char arg2[] = "--metrics-fd=4";
    char* args[] = {arg0, arg1, arg2, nullptr};
    execv(bin.c_str(), args);
    _exit(127);
  }
  close(sv[1]);
  w->pid = pid;
  w->ipc_fd = sv[0];
  w->reader = ipc::FrameReader();
  w->ready = false;
  w->drained = false;
  w->started_ms = NowMs();
  w->restart_at_ms = -1;
  w->refused_version = 0;
  w->refused_error.clear();
  SendSetup(w, /*reconfigure=*/false);
  log::LogEvent("worker_started").Add("shard", w->shard).Add("worker_pid", pid).Emit();
  return absl::OkStatus();
}

void Supervisor::SendSetup(Worker* w, bool reconfigure) {
  ipc::v1::SupervisorToWorker msg;
  ipc::v1::WorkerSetup* setup = reconfigure ? msg.mutable_reconfigure() : msg.mutable_setup();
  setup->set_shard(w->shard);
  setup->set_shard_count(options_.workers);
  setup->set_config_version(config_version_);
  setup->set_tls_ticket_key(ticket_key_);
  for (uint32_t shard : AdoptedShards(config_.node().data_dir(), options_.workers, w->shard)) {
    setup->add_adopted_shards(shard);
  }
  *setup->mutable_config() = config_;
  absl::Status st = ipc::WriteFrame(w->ipc_fd, msg.SerializeAsString());
  if (!st.ok()) {
    log::LogEvent("ipc_write_failed", log::Level::kWarn)
        .Add("shard", w->shard)
        .Add("error", std::string(st.message()))
        .Emit();
  }
}

void Supervisor::OnWorkerReadable(Worker* w) {
  // Queue listings can be large frames: read them in few calls.
  char buf[65536];
  ssize_t n = read(w->ipc_fd, buf, sizeof buf);
  if (n <= 0) {
    // The worker closed its end (it is exiting); SIGCHLD does the rest.
    close(w->ipc_fd);
    w->ipc_fd = -1;
    FailQueueRequests(w->shard, absl::StrCat("worker ", w->shard, " exited"));
    return;
  }
  w->reader.Append(std::string(buf, static_cast<size_t>(n)));
  while (true) {
    auto next = w->reader.Next();
    if (!next.ok() || !next->has_value()) break;
    ipc::v1::WorkerToSupervisor msg;
    if (!msg.ParseFromString(**next)) continue;
    if (msg.has_ready()) {
      w->ready = true;
      w->applied_version = config_version_;
      log::LogEvent("worker_ready").Add("shard", w->shard).Add("worker_pid", w->pid).Emit();
    } else if (msg.has_config_ack()) {
      const auto& ack = msg.config_ack();
      if (ack.applied()) {
        w->applied_version = ack.config_version();
      } else {
        w->refused_version = ack.config_version();
        w->refused_error = ack.error();
      }
      log::LogEvent(ack.applied() ? "config_acked" : "config_nacked",
                    ack.applied() ? log::Level::kInfo : log::Level::kWarn)
          .Add("shard", w->shard)
          .Add("version", static_cast<int64_t>(ack.config_version()))
          .Add("error", ack.error())
          .Emit();
    } else if (msg.has_drained()) {
      w->drained = true;
    } else if (msg.has_queue_reply()) {
      CompleteQueueRequest(w->shard, std::move(*msg.mutable_queue_reply()));
      continue;  // no status change to publish
    }
  }
  PublishStatus();
}

void Supervisor::OnChildExit(pid_t pid, int status) {
  for (auto& w : workers_) {
    if (w->pid != pid) continue;
    w->pid = -1;
    w->ready = false;
    w->region->Set(metrics::kWorkerUp, 0, 0);
    w->region->Set(metrics::kConnectionsActive, 0, 0);
    if (w->ipc_fd >= 0) {
      close(w->ipc_fd);
      w->ipc_fd = -1;
    }
    // Its loop is gone and with it every request it had not answered.
    FailQueueRequests(w->shard, absl::StrCat("worker ", w->shard, " exited"));
    std::string how = WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                          : "exit " + std::to_string(WEXITSTATUS(status));
    if (draining_) {
      log::LogEvent("worker_exited").Add("shard", w->shard).Add("status", how).Emit();
      PublishStatus();
      return;
    }
    int64_t now = NowMs();
    if (now - w->started_ms >= kStableMs) w->backoff_ms = kMinBackoffMs;
    w->restart_at_ms = now + w->backoff_ms;
    log::LogEvent("worker_died", log::Level::kError)
        .Add("shard", w->shard)
        .Add("status", how)
        .Add("restart_in_ms", w->backoff_ms)
        .Emit();
    w->backoff_ms = std::min(w->backoff_ms * 2, kMaxBackoffMs);
    PublishStatus();
    return;
  }
}

void Supervisor::StartDrain() {
  if (draining_) return;
  draining_ = true;
  int64_t deadline = DurationMs(config_.node().drain_timeout());
  drain_deadline_ms_ = NowMs() + deadline;
  log::LogEvent("draining").Add("deadline_ms", deadline).Emit();
  ipc::v1::SupervisorToWorker msg;
  msg.mutable_drain()->set_deadline_ms(static_cast<uint64_t>(deadline));
  for (auto& w : workers_) {
    w->restart_at_ms = -1;
    if (w->ipc_fd >= 0) (void)ipc::WriteFrame(w->ipc_fd, msg.SerializeAsString());
  }
  PublishStatus();
}

void Supervisor::Reload() {
  if (options_.on_reload) {
    options_.on_reload();  // submits; ApplySubmittedConfig() sends it
    ApplySubmittedConfig();
    return;
  }
  if (!options_.reload) {
    log::LogEvent("reload_skipped").Add("reason", "running on embedded defaults").Emit();
    return;
  }
  auto next = options_.reload();
  if (!next.ok()) {
    log::LogEvent("reload_refused", log::Level::kError)
        .Add("error", std::string(next.status().message()))
        .Emit();
    return;
  }
  config_ = std::move(*next);
  SendNewConfig();
}

void Supervisor::RotateTicketKey() {
  // Session-ticket keys are secrets shared by the node's workers so a
  // returning client resumes on whichever worker it reaches; a new one each
  // hour, each worker keeping the previous for decryption.
  ticket_key_.assign(48, '\0');
  if (getrandom(ticket_key_.data(), ticket_key_.size(), 0) !=
      static_cast<ssize_t>(ticket_key_.size())) {
    // Without a key the workers keep their own random ones: resumption
    // then works only on the same worker.
    ticket_key_.clear();
    return;
  }
  ticket_key_rotated_ms_ = NowMs();
  ipc::v1::SupervisorToWorker msg;
  msg.mutable_ticket_key()->set_material(ticket_key_);
  for (auto& w : workers_) {
    if (w->ipc_fd >= 0) (void)ipc::WriteFrame(w->ipc_fd, msg.SerializeAsString());
  }
}

absl::Status Supervisor::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) return absl::ErrnoToStatus(errno, "signalfd");
  signal(SIGPIPE, SIG_IGN);

  RotateTicketKey();
  PublishStatus();
  for (auto& w : workers_) {
    absl::Status st = Spawn(w.get());
    if (!st.ok()) return st;
  }

  while (true) {
    int64_t now = NowMs();
    if (!draining_ && now - ticket_key_rotated_ms_ >= kTicketKeyRotationMs) RotateTicketKey();
    bool any_alive = false;
    for (auto& w : workers_) any_alive |= w->pid > 0;
    if (draining_ && !any_alive) break;
    if (draining_ && now > drain_deadline_ms_ + kKillGraceMs) {
      for (auto& w : workers_) {
        if (w->pid > 0) {
          log::LogEvent("worker_killed", log::Level::kWarn).Add("shard", w->shard).Emit();
          kill(w->pid, SIGKILL);
        }
      }
    }
    for (auto& w : workers_) {
      if (!draining_ && w->pid < 0 && w->restart_at_ms >= 0 && now >= w->restart_at_ms) {
        w->region->Add(metrics::kWorkerRestarts, 0);
        absl::Status st = Spawn(w.get());
        if (!st.ok()) {
          log::LogEvent("worker_spawn_failed", log::Level::kError)
              .Add("error", std::string(st.message()))
              .Emit();
          w->restart_at_ms = now + w->backoff_ms;
        }
      }
    }

    FlushQueueOutbox();
    if (!draining_) ApplySubmittedConfig();
    std::vector<pollfd> fds;
    fds.push_back({sfd, POLLIN, 0});
    fds.push_back({wake_fd_, POLLIN, 0});
    std::vector<Worker*> polled;
    for (auto& w : workers_) {
      if (w->ipc_fd >= 0) {
        fds.push_back({w->ipc_fd, POLLIN, 0});
        polled.push_back(w.get());
      }
    }
    int rc = poll(fds.data(), fds.size(), 100);
    if (rc < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "poll");
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents != 0) OnWorkerReadable(polled[i - 2]);
    }
    if (fds[1].revents & POLLIN) {
      uint64_t count = 0;
      (void)!read(wake_fd_, &count, sizeof count);  // reset; FlushQueueOutbox() runs next turn
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      while (read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) StartDrain();
        if (si.ssi_signo == SIGHUP) Reload();
        if (si.ssi_signo == SIGCHLD) {
          int status = 0;
          pid_t pid;
          while ((pid = waitpid(-1, &status, WNOHANG)) > 0) OnChildExit(pid, status);
        }
        // The signalfd is blocking: stop once the pending set is empty.
        pollfd more{sfd, POLLIN, 0};
        if (poll(&more, 1, 0) <= 0) break;
      }
    }
  }
  close(sfd);
  {
    absl::MutexLock lock(&queue_mu_);
    stopped_ = true;
    FailQueueRequestsLocked(kAllWorkers, "the node is stopping");
  }
  log::LogEvent("stopped").Emit();
  return absl::OkStatus();
}

}  // namespace postern::control
