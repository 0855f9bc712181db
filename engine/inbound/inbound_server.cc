#include "engine/inbound/inbound_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "engine/net/socket_address.h"

namespace postern::engine {
namespace {

constexpr int kListenBacklog = 4096;

}  // namespace

InboundServer::InboundServer(IoRing* ring, InboundProbe* probe, queue::SpoolWriter* writer,
                             queue::QueueIdGenerator* ids, uint32_t shard, SpooledFn on_spooled)
    : ring_(ring),
      probe_(probe),
      writer_(writer),
      ids_(ids),
      shard_(shard),
      on_spooled_(std::move(on_spooled)) {}

InboundServer::~InboundServer() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) close(l->fd);
  }
}

int64_t InboundServer::NowMs() const { return MonotonicMs(); }

absl::Status InboundServer::Listen(const config::v1::Config& config) {
  for (int i = 0; i < config.listeners_size(); ++i) {
    const config::v1::Listener& lc = config.listeners(i);
    auto addr = ParseSocketAddress(lc.address());
    if (!addr.ok()) return addr.status();
    auto fd = OpenListenSocket(*addr, kListenBacklog);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(), "listener " + lc.name() + " on " + lc.address() +
                                                  ": " + std::string(fd.status().message()));
    }
    auto l = std::make_unique<Listener>();
    l->server = this;
    l->index = static_cast<size_t>(i);
    l->name = lc.name();
    l->fd = *fd;
    ring_->Accept(l->fd, &l->op);
    l->armed = true;
    listeners_.push_back(std::move(l));
  }
  return absl::OkStatus();
}

void InboundServer::SetPolicy(std::shared_ptr<const InboundPolicySet> policy,
                              InboundServerLimits limits) {
  policy_ = std::move(policy);
  limits_ = limits;
  if (limiter_) {
    limiter_->SetLimits(limits_.per_address);
  } else {
    limiter_ = std::make_unique<ConnectionLimiter>(limits_.per_address);
  }
  if (verifier_) {
    verifier_->SetUserDb(policy_->users());
  } else {
    verifier_ = std::make_unique<AuthVerifier>(policy_->users());
    ring_->Read(verifier_->completion_eventfd(), &auth_event_value_, sizeof(uint64_t),
                &auth_event_op_);
  }
}

void InboundServer::OnAccept(Listener* l, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) l->armed = false;
  if (res >= 0) {
    const int fd = res;
    if (draining_ || connections_.size() >= limits_.max_connections) {
      probe_->ConnectionRefused(l->index);
      static constexpr char kBusy[] = "421 4.7.0 Too many connections\r\n";
      // Best effort on a fresh socket: its send buffer is empty, so this
      // never blocks.
      send(fd, kBusy, sizeof kBusy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      ring_->Close(fd);
    } else {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
      ConnectionSetup setup;
      setup.id = next_connection_id_++;
      setup.listener_index = l->index;
      setup.socket_ip = AddressIp(peer);
      setup.socket_port = AddressPort(peer);
      log::LogEvent("connect")
          .Add("conn", static_cast<int64_t>(setup.id))
          .Add("listener", l->name)
          .Add(policy_->listener(l->index).proxy_protocol ? "peer" : "client", setup.socket_ip)
          .Emit();
      const uint64_t id = setup.id;
      auto conn = std::make_unique<InboundConnection>(this, probe_, ring_, fd, std::move(setup),
                                                      policy_, NowMs());
      InboundConnection* raw = conn.get();
      connections_.emplace(id, std::move(conn));
      probe_->ConnectionAccepted(l->index);
      raw->Start();
    }
  } else if (res != -ECANCELED && res != -EINVAL && res != -EBADF) {
    log::LogEvent("accept_failed", log::Level::kWarn).Add("errno", -res).Emit();
  }
  if (!l->armed && !draining_ && l->fd >= 0) {
    ring_->Accept(l->fd, &l->op);
    l->armed = true;
  }
}

bool InboundServer::Admit(InboundConnection* conn) {
  if (policy_->relay().IsTrusted(conn->client_ip())) return true;
  const ConnectionLimiter::Admission a = limiter_->Admit(conn->client_ip(), NowMs());
  if (a == ConnectionLimiter::Admission::kOk) {
    limited_.insert(conn->id());
    return true;
  }
  probe_->ConnectionRefused(conn->listener_index());
  log::LogEvent("connection_refused", log::Level::kWarn)
      .Add("conn", static_cast<int64_t>(conn->id()))
      .Add("client", conn->client_ip())
      .Add("reason", a == ConnectionLimiter::Admission::kRateExceeded ? "rate" : "concurrency")
      .Emit();
  return false;
}

std::string InboundServer::NextQueueId() { return ids_->Next(); }

void InboundServer::Spool(InboundConnection* conn, const std::string& queue_id,
                          AcceptedMessage msg) {
  queue::SpoolRecord record;
  queue::v1::Envelope& env = record.envelope;
  env.set_queue_id(queue_id);
  env.set_sender(msg.sender);
  for (size_t i = 0; i < msg.recipients.size(); ++i) {
    queue::v1::Recipient* rcpt = env.add_recipients();
    rcpt->set_address(std::move(msg.recipients[i]));
    rcpt->set_state(queue::v1::RECIPIENT_STATE_PENDING);
    if (i < msg.recipient_dsn.size()) {
      rcpt->set_notify(msg.recipient_dsn[i].notify);
      rcpt->set_orcpt(msg.recipient_dsn[i].orcpt);
    }
  }
  env.set_dsn_ret(msg.dsn_ret);
  env.set_dsn_envid(msg.dsn_envid);
  *env.mutable_arrival_time() = ToProtoTimestamp(absl::Now());
  env.set_helo(msg.helo);
  env.set_client_address(conn->client_ip());
  env.set_listener(policy_->listener(conn->listener_index()).name);
  env.set_body_size(msg.body.size());
  env.set_shard(shard_);
  env.set_smtputf8(msg.smtputf8);
  env.set_eight_bit_mime(msg.eight_bit_mime);
  // Due at once; the index key is written in the same batch.
  *env.mutable_schedule()->mutable_next_attempt() = env.arrival_time();
  record.body = std::move(msg.body);
  // The token is the connection id: if the connection is gone when the write
  // completes, the message is still spooled and nobody is answered. The
  // completion hands the record back, so nothing is kept meanwhile.
  writer_->Submit(conn->id(), std::move(record), this);
}

void InboundServer::OnSpoolCompletion(queue::SpoolCompletion c) {
  probe_->SpoolBatch(c.batch_size);
  const queue::v1::Envelope& env = c.record.envelope;
  const std::string queue_id = env.queue_id();  // the record moves on below
  InboundConnection* conn = Find(c.token);
  if (!c.status.ok()) {
    probe_->SpoolWriteError();
    log::LogEvent("spool_write_failed", log::Level::kError)
        .Add("queue_id", queue_id)
        .Add("error", std::string(c.status.message()))
        .Emit();
  } else if (conn != nullptr) {
    probe_->MessageAccepted(conn->listener_index());
    log::LogEvent("queued")
        .Add("conn", static_cast<int64_t>(c.token))
        .Add("queue_id", queue_id)
        .Add("client", env.client_address())
        .Add("from", env.sender().empty() ? "<>" : env.sender())
        .Add("nrcpt", static_cast<int64_t>(env.recipients_size()))
        .Add("size", static_cast<int64_t>(env.body_size()))
        .Add("batch", c.batch_size)
        .Emit();
  }
  const absl::Status status = c.status;
  if (status.ok()) on_spooled_(std::move(c.record));
  if (conn != nullptr) conn->SpoolDone(status, queue_id);
}

InboundConnection* InboundServer::Find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void InboundServer::ConnectionClosing(InboundConnection* conn) {
  closing_ids_.push_back(conn->id());
  if (limited_.erase(conn->id()) > 0) limiter_->Release(conn->client_ip());
  probe_->ConnectionClosed(conn->listener_index());
}

void InboundServer::Reap() {
  for (size_t i = 0; i < closing_ids_.size();) {
    auto it = connections_.find(closing_ids_[i]);
    if (it == connections_.end() || it->second->Finished()) {
      if (it != connections_.end()) {
        log::LogEvent("disconnect").Add("conn", static_cast<int64_t>(it->first)).Emit();
        connections_.erase(it);
      }
      closing_ids_[i] = closing_ids_.back();
      closing_ids_.pop_back();
      continue;
    }
    ++i;
  }
}

void InboundServer::CheckAuth(InboundConnection* conn, AuthRequest request) {
  if (!auth_throttle_.Allowed(conn->client_ip(), NowMs())) {
    probe_->AuthAttempt("throttled");
    deferred_auth_.emplace_back(conn->id(), AuthOutcome::kThrottled);
    return;
  }
  // The username goes to the log; the password goes only to the verifier,
  // which wipes it.
  log::LogEvent("auth_check")
      .Add("conn", static_cast<int64_t>(conn->id()))
      .Add("client", conn->client_ip())
      .Add("user", request.username)
      .Emit();
  verifier_->Submit(conn->id(), std::move(request.username), std::move(request.password));
}

void InboundServer::RunDeferred() {
  std::vector<std::pair<uint64_t, AuthOutcome>> todo;
  todo.swap(deferred_auth_);
  for (const auto& [id, outcome] : todo) {
    if (InboundConnection* conn = Find(id)) conn->AuthDone(outcome, {});
  }
}

void InboundServer::OnAuthEvent(int res, uint32_t flags) {
  for (AuthResult& r : verifier_->TakeCompletions()) {
    AuthOutcome outcome = AuthOutcome::kTempFail;
    std::string result = "failed";
    if (r.verdict == AuthResult::Verdict::kOk) {
      outcome = AuthOutcome::kOk;
      result = "ok";
    } else if (r.verdict == AuthResult::Verdict::kBad) {
      outcome = AuthOutcome::kBad;
    }
    probe_->AuthAttempt(result);
    InboundConnection* conn = Find(r.token);
    if (conn == nullptr) continue;
    const std::string& ip = conn->client_ip();
    if (outcome == AuthOutcome::kOk) auth_throttle_.Succeeded(ip);
    if (outcome == AuthOutcome::kBad) auth_throttle_.Failed(ip, NowMs());
    log::LogEvent("auth", outcome == AuthOutcome::kOk ? log::Level::kInfo : log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(r.token))
        .Add("client", ip)
        .Add("result", result)
        .Emit();
    conn->AuthDone(outcome, std::move(r.domains));
  }
  if (!auth_stopped_) {
    ring_->Read(verifier_->completion_eventfd(), &auth_event_value_, sizeof(uint64_t),
                &auth_event_op_);
  }
}

void InboundServer::StopAuth() {
  auth_stopped_ = true;
  if (verifier_) verifier_->Stop();
}

void InboundServer::Tick(int64_t now) {
  limiter_->Sweep(now);
  const int64_t command_ms = policy_->command_timeout_ms();
  const int64_t data_ms = policy_->data_timeout_ms();
  for (auto& [id, conn] : connections_) {
    if (conn->closing() || conn->waiting_for_spool() || conn->waiting_for_auth()) continue;
    if (draining_ && now >= drain_deadline_ms_) {
      conn->Shutdown();
      continue;
    }
    conn->MaybeGreet(now);
    // Timeouts count from progress, not from the last byte: a command line
    // must be complete within command_timeout, the content within
    // data_timeout, so a slow-drip client cannot hold a connection.
    const char* which = nullptr;
    const int64_t data_started = conn->data_started_ms();
    if (data_started >= 0) {
      if (data_ms > 0 && now - data_started >= data_ms) which = "data";
    } else if (command_ms > 0 && now - conn->last_progress_ms() >= command_ms) {
      which = "command";
    }
    if (which != nullptr) {
      log::LogEvent("timeout").Add("conn", static_cast<int64_t>(id)).Add("phase", which).Emit();
      conn->Timeout();
    }
  }
}

void InboundServer::StartDrain(int64_t deadline_ms) {
  if (draining_) {
    drain_deadline_ms_ = std::min(drain_deadline_ms_, deadline_ms);
    return;
  }
  draining_ = true;
  drain_deadline_ms_ = deadline_ms;
  for (auto& l : listeners_) {
    if (l->armed) ring_->Cancel(&l->op);
    close(l->fd);
    l->fd = -1;
  }
}

}  // namespace postern::engine
