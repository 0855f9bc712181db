#include "engine/worker/worker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/log.h"
#include "queue/shard_adoption.h"

namespace postern::engine {
namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kRecvBuffers = 1024;
constexpr unsigned kRecvBufferSize = 16 * 1024;
constexpr int64_t kTickMs = 250;

}  // namespace

Worker::Worker(int ipc_fd, std::unique_ptr<metrics::MetricRegion> metrics)
    : ipc_fd_(ipc_fd), metrics_(std::move(metrics)) {
  tick_ts_.tv_nsec = kTickMs * 1000000;
}

Worker::~Worker() {
  if (ipc_fd_ >= 0) close(ipc_fd_);
}

void Worker::AdoptShards(const ipc::v1::WorkerSetup& setup) {
  for (uint32_t shard : setup.adopted_shards()) {
    const std::filesystem::path dir =
        std::filesystem::path(setup.config().node().data_dir()) / "spool" / std::to_string(shard);
    absl::StatusOr<int64_t> moved = queue::AdoptShardSpool(store_.get(), dir.string());
    log::LogEvent(moved.ok() ? "shard_adopted" : "adopt_failed",
                  moved.ok() ? log::Level::kInfo : log::Level::kWarn)
        .Add("shard", static_cast<int64_t>(shard))
        .Add("messages", moved.ok() ? *moved : 0)
        .Add("error", moved.ok() ? "" : std::string(moved.status().message()))
        .Emit();
  }
}

absl::Status Worker::Init(const ipc::v1::WorkerSetup& setup) {
  shard_ = setup.shard();
  absl::Status st = ring_.Init(kRingEntries, kRecvBuffers, kRecvBufferSize);
  if (!st.ok()) return st;

  const std::filesystem::path spool_dir =
      std::filesystem::path(setup.config().node().data_dir()) / "spool" / std::to_string(shard_);
  auto store = queue::SpoolStore::Open(spool_dir.string(), queue::SpoolOptions{});
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  ids_ = std::make_unique<queue::QueueIdGenerator>(shard_);
  ids_->AdvancePast(store_->LastId());
  AdoptShards(setup);
  writer_ = std::make_unique<queue::SpoolWriter>(store_.get());

  ticket_key_ = setup.tls_ticket_key();
  auto snapshot = PolicySnapshot::Build(setup.config(), setup.config_version(), ticket_key_);
  if (!snapshot.ok()) return snapshot.status();

  DnsResolverOptions dns_options;
  dns_options.servers.assign(setup.config().dns().servers().begin(),
                             setup.config().dns().servers().end());
  auto resolver = DnsResolver::Create(dns_options);
  if (!resolver.ok()) return resolver.status();
  transport_ = std::make_unique<OutboundTransport>(
      &ring_, (*snapshot)->outbound_options(), (*snapshot)->outbound_policy(),
      (*snapshot)->routes(), std::move(*resolver), &outbound_probe_);

  queue::QueueManagerOptions queue_options;
  queue_options.hostname = setup.config().node().hostname();
  queue_options.hold = (*snapshot)->hold();
  queue_ = std::make_unique<queue::QueueManager>(
      store_.get(), writer_.get(), transport_.get(), (*snapshot)->retry_schedule(), queue_options,
      [] { return absl::Now(); }, [this] { return ids_->Next(); }, &queue_probe_);
  if (absl::Status recovered = queue_->Recover(); !recovered.ok()) return recovered;

  inbound_ = std::make_unique<InboundServer>(&ring_, &inbound_probe_, writer_.get(), ids_.get(),
                                             shard_, [this](queue::SpoolRecord record) {
                                               queue_->OnSpooled(std::move(record));
                                               UpdateQueueGauges();
                                             });
  Install(std::move(*snapshot));
  if (absl::Status listening = inbound_->Listen(setup.config()); !listening.ok()) {
    return listening;
  }

  ring_.Timeout(&tick_ts_, &tick_op_);
  ring_.Read(writer_->completion_eventfd(), &spool_event_value_, sizeof(uint64_t), &spool_op_);
  ring_.Recv(ipc_fd_, &ipc_op_);

  UpdateQueueGauges();
  metrics_->Set(metrics::kWorkerUp, 0, 1);

  ipc::v1::WorkerToSupervisor ready;
  ready.mutable_ready()->set_shard(shard_);
  ready.mutable_ready()->set_pid(static_cast<uint32_t>(getpid()));
  SendToSupervisor(ready);
  log::LogEvent("worker_ready")
      .Add("listeners", static_cast<int64_t>(inbound_->listener_count()))
      .Add("spooled", static_cast<int64_t>(queue_->depth()))
      .Emit();
  return absl::OkStatus();
}

absl::Status Worker::ApplyConfig(const ipc::v1::WorkerSetup& setup) {
  config::v1::Config config = setup.config();
  if (config.listeners_size() != snapshot_->config().listeners_size()) {
    // The sockets are open; their settings stay as they are until the
    // worker restarts, so every socket keeps a listener to describe it.
    log::LogEvent("reconfigure_listeners_ignored", log::Level::kWarn)
        .Add("reason", "listener changes take effect when the worker restarts")
        .Emit();
    *config.mutable_listeners() = snapshot_->config().listeners();
  }
  // Everything is built before anything is swapped: a refused version
  // leaves the running one untouched.
  const std::string& key = setup.tls_ticket_key().empty() ? ticket_key_ : setup.tls_ticket_key();
  auto snapshot = PolicySnapshot::Build(config, setup.config_version(), key);
  if (!snapshot.ok()) return snapshot.status();
  ticket_key_ = key;
  Install(std::move(*snapshot));
  return absl::OkStatus();
}

void Worker::Install(std::shared_ptr<const PolicySnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  inbound_->SetPolicy(snapshot_->inbound(), snapshot_->inbound_limits());
  transport_->Reconfigure(snapshot_->outbound_options(), snapshot_->outbound_policy(),
                          snapshot_->routes());
  queue_->set_hold(snapshot_->hold() || draining_);
  queue_->set_schedule(snapshot_->retry_schedule());
  metrics_->Set(metrics::kPolicyVersion, 0, snapshot_->version());
}

absl::Status Worker::Run() {
  while (!done_) {
    inbound_->RunDeferred();
    absl::Status st = ring_.RunOnce();
    if (!st.ok()) return st;
    inbound_->Reap();
    if (draining_ && inbound_->connection_count() == 0 && !done_ &&
        (transport_->open_connections() == 0 || MonotonicMs() >= drain_deadline_ms_)) {
      // Everything answered: flush the spool and say goodbye.
      inbound_->StopAuth();
      writer_->Stop();
      OnSpoolEvent(0, 0);
      ipc::v1::WorkerToSupervisor drained;
      drained.mutable_drained();
      SendToSupervisor(drained);
      done_ = true;
    }
  }
  metrics_->Set(metrics::kWorkerUp, 0, 0);
  metrics_->Set(metrics::kConnectionsActive, 0, 0);
  log::LogEvent("worker_stopped").Emit();
  return absl::OkStatus();
}

void Worker::OnSpoolEvent(int res, uint32_t flags) {
  for (queue::SpoolCompletion& c : writer_->TakeCompletions()) {
    metrics_->Observe(metrics::kSpoolWriteSeconds, 0, absl::ToDoubleSeconds(c.latency));
    // Each write goes back to whoever submitted it.
    queue::SpoolClient* client = c.client;
    if (client != nullptr) client->OnSpoolCompletion(std::move(c));
  }
  if (!done_ && !(draining_ && inbound_->connection_count() == 0)) {
    ring_.Read(writer_->completion_eventfd(), &spool_event_value_, sizeof(uint64_t), &spool_op_);
  }
}

void Worker::OnTick(int res, uint32_t flags) {
  inbound_->Tick(MonotonicMs());
  queue_->Tick();
  UpdateQueueGauges();
  if (!done_) ring_.Timeout(&tick_ts_, &tick_op_);
}

void Worker::UpdateQueueGauges() {
  metrics_->Set(metrics::kSpoolMessages, 0, queue_->depth());
  metrics_->Set(metrics::kQueueMessages, 0, queue_->depth());
  metrics_->Set(metrics::kQueueDeferred, 0, queue_->deferred());
  metrics_->Set(metrics::kQueueHeld, 0, queue_->held());
  metrics_->Set(metrics::kQueueOldestSeconds, 0,
                static_cast<uint64_t>(queue_->oldest_age_seconds()));
}

void Worker::OnIpc(int res, uint32_t flags) {
  bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    ipc_reader_.Append(ring_.BufferData(flags, res));
    ring_.ReturnBuffer(flags);
    while (true) {
      auto next = ipc_reader_.Next();
      if (!next.ok()) {
        log::LogEvent("ipc_corrupt", log::Level::kError)
            .Add("error", std::string(next.status().message()))
            .Emit();
        StartDrain(MonotonicMs());
        return;
      }
      if (!next->has_value()) break;
      ipc::v1::SupervisorToWorker msg;
      if (!msg.ParseFromString(**next)) {
        log::LogEvent("ipc_unparseable", log::Level::kError).Emit();
        continue;
      }
      HandleIpcMessage(msg);
    }
  } else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
    // posternd is gone: finish what is open and exit rather than orphan.
    log::LogEvent("supervisor_lost", log::Level::kWarn).Emit();
    StartDrain(MonotonicMs() + 5000);
    return;
  }
  if (!more && !done_) ring_.Recv(ipc_fd_, &ipc_op_);
}

void Worker::HandleIpcMessage(const ipc::v1::SupervisorToWorker& msg) {
  if (msg.has_reconfigure()) {
    const absl::Status st = ApplyConfig(msg.reconfigure());
    ipc::v1::WorkerToSupervisor ack;
    ack.mutable_config_ack()->set_config_version(msg.reconfigure().config_version());
    ack.mutable_config_ack()->set_applied(st.ok());
    if (!st.ok()) ack.mutable_config_ack()->set_error(std::string(st.message()));
    SendToSupervisor(ack);
    log::LogEvent(st.ok() ? "config_applied" : "config_refused",
                  st.ok() ? log::Level::kInfo : log::Level::kWarn)
        .Add("version", static_cast<int64_t>(msg.reconfigure().config_version()))
        .Add("error", st.ok() ? "" : std::string(st.message()))
        .Emit();
  } else if (msg.has_ticket_key()) {
    ticket_key_ = msg.ticket_key().material();
    if (TlsServerContext* tls = snapshot_->inbound()->tls()) {
      absl::Status st = tls->RotateTicketKeys(ticket_key_);
      if (!st.ok()) {
        log::LogEvent("ticket_key_refused", log::Level::kWarn)
            .Add("error", std::string(st.message()))
            .Emit();
      }
    }
  } else if (msg.has_drain()) {
    StartDrain(MonotonicMs() + static_cast<int64_t>(msg.drain().deadline_ms()));
  } else if (msg.has_queue_request()) {
    const uint64_t request_id = msg.queue_request().request_id();
    queue_->HandleRequest(msg.queue_request().request(),
                          [this, request_id](queue::v1::QueueReply reply) {
                            ipc::v1::WorkerToSupervisor out;
                            out.mutable_queue_reply()->set_request_id(request_id);
                            *out.mutable_queue_reply()->mutable_reply() = std::move(reply);
                            SendToSupervisor(out);
                            UpdateQueueGauges();
                          });
  }
}

void Worker::StartDrain(int64_t deadline_ms) {
  if (draining_) {
    drain_deadline_ms_ = std::min(drain_deadline_ms_, deadline_ms);
    inbound_->StartDrain(deadline_ms);
    return;
  }
  draining_ = true;
  drain_deadline_ms_ = deadline_ms;
  log::LogEvent("draining")
      .Add("open_sessions", static_cast<int64_t>(inbound_->connection_count()))
      .Emit();
  inbound_->StartDrain(deadline_ms);
  metrics_->Set(metrics::kWorkerUp, 0, 0);
  // Outbound: start nothing new, close idle connections; messages in
  // transfer get until the deadline.
  queue_->set_hold(true);
  transport_->Shutdown();
}

void Worker::SendToSupervisor(const ipc::v1::WorkerToSupervisor& msg) {
  // Frames are tiny and rare and the socketpair buffer is empty in practice;
  // a full buffer would mean posternd is stuck, and the message is dropped
  // rather than block the loop.
  std::string frame;
  ipc::AppendFrame(msg.SerializeAsString(), &frame);
  ssize_t w = send(ipc_fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (w != static_cast<ssize_t>(frame.size())) {
    log::LogEvent("ipc_send_failed", log::Level::kWarn).Add("errno", errno).Emit();
  }
}

}  // namespace postern::engine
