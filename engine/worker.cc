#include "engine/worker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/log.h"
#include "engine/socket_address.h"

namespace postern::engine {

using metrics::MetricId;

namespace {

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kRecvBuffers = 1024;
constexpr unsigned kRecvBufferSize = 16 * 1024;
constexpr int kListenBacklog = 4096;
constexpr int64_t kTickMs = 250;

}  // namespace

struct Worker::Listener {
  size_t index = 0;
  std::string name;
  int fd = -1;
  std::unique_ptr<AcceptOp> op;
  bool armed = false;
};

class Worker::AcceptOp : public IoOp {
 public:
  AcceptOp(Worker* w, Listener* l) : w_(w), l_(l) {}
  void OnComplete(int res, uint32_t flags) override { w_->OnAccept(l_, res, flags); }

 private:
  Worker* w_;
  Listener* l_;
};

class Worker::TickOp : public IoOp {
 public:
  explicit TickOp(Worker* w) : w_(w) {}
  void OnComplete(int res, uint32_t flags) override { w_->OnTick(); }
  __kernel_timespec ts{0, kTickMs * 1000000};

 private:
  Worker* w_;
};

class Worker::SpoolEventOp : public IoOp {
 public:
  explicit SpoolEventOp(Worker* w) : w_(w) {}
  void OnComplete(int res, uint32_t flags) override { w_->OnSpoolEvent(res); }
  uint64_t value = 0;

 private:
  Worker* w_;
};

class Worker::AuthEventOp : public IoOp {
 public:
  explicit AuthEventOp(Worker* w) : w_(w) {}
  void OnComplete(int res, uint32_t flags) override { w_->OnAuthEvent(res); }
  uint64_t value = 0;

 private:
  Worker* w_;
};

class Worker::IpcOp : public IoOp {
 public:
  explicit IpcOp(Worker* w) : w_(w) {}
  void OnComplete(int res, uint32_t flags) override { w_->OnIpc(res, flags); }

 private:
  Worker* w_;
};

Worker::Worker(int ipc_fd, std::unique_ptr<metrics::MetricRegion> metrics)
    : ipc_fd_(ipc_fd), metrics_(std::move(metrics)) {}

Worker::~Worker() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) close(l->fd);
  }
  if (ipc_fd_ >= 0) close(ipc_fd_);
}

// Logs and counts what the queue manager reports.
class Worker::QueueEvents : public queue::QueueObserver {
 public:
  explicit QueueEvents(Worker* w) : w_(w) {}
  void RecipientDone(const queue::v1::Envelope& envelope, int recipient,
                     const queue::AttemptResult& r, queue::Decision decision) override {
    const std::string result(queue::DecisionLabel(decision));
    w_->metrics_->Add(metrics::kDeliveries,
                      metrics::NameIndex(metrics::DeliveryResultNames(), result));
    const size_t reason = metrics::NameIndex(metrics::DeferReasonNames(),
                                             std::string(queue::DeferReasonLabel(r.reason)));
    if (decision == queue::Decision::kDeferred) w_->metrics_->Add(metrics::kDeferrals, reason);
    // A temporary outcome that fails the recipient: a limit ran out.
    if (decision == queue::Decision::kFailed && r.kind == queue::AttemptResult::kTemporary) {
      w_->metrics_->Add(metrics::kExpiries, reason);
    }
    log::LogEvent(result,
                  decision == queue::Decision::kDelivered ? log::Level::kInfo : log::Level::kWarn)
        .Add("queue_id", envelope.queue_id())
        .Add("to", envelope.recipients(recipient).address())
        .Add("relay", r.remote_mta)
        .Add("status", envelope.recipients(recipient).status())
        .Add("reason", decision == queue::Decision::kDeferred
                           ? std::string(queue::DeferReasonLabel(r.reason))
                           : std::string())
        .Add("tls_result", r.tls_result)
        .Add("reply", r.diagnostic)
        .Emit();
  }
  void DsnQueued(const queue::v1::Envelope& dsn, const std::string& original_id) override {
    w_->metrics_->Add(metrics::kDsnsSent, 0);
    log::LogEvent("dsn_queued")
        .Add("queue_id", dsn.queue_id())
        .Add("original", original_id)
        .Add("to", dsn.recipients_size() > 0 ? dsn.recipients(0).address() : "")
        .Emit();
  }
  void AttemptDone(const std::string& queue_id, absl::Duration took) override {
    w_->metrics_->Observe(metrics::kDeliverySeconds, 0, absl::ToDoubleSeconds(took));
  }
  void WriteFailed(const std::string& queue_id, const absl::Status& status) override {
    log::LogEvent("queue_write_failed", log::Level::kError)
        .Add("queue_id", queue_id)
        .Add("error", std::string(status.message()))
        .Emit();
  }

 private:
  Worker* w_;
};

// Logs and counts what the outbound transport reports.
class Worker::OutboundEvents : public OutboundObserver {
 public:
  explicit OutboundEvents(Worker* w) : w_(w) {}
  void SessionDone(const std::string& label, const std::string& tls,
                   const std::string& detail) override {
    w_->metrics_->Add(metrics::kOutboundSessions,
                      metrics::NameIndex(metrics::OutboundTlsNames(), tls));
    log::LogEvent("outbound_failed", log::Level::kWarn)
        .Add("relay", label)
        .Add("result", tls)
        .Add("detail", detail)
        .Emit();
  }
  void TestingWouldFail(const std::string& domain, const std::string& label,
                        const std::string& result_type, const std::string& detail) override {
    w_->metrics_->Add(metrics::kOutboundTlsTestingFailures,
                      metrics::NameIndex(metrics::OutboundTlsNames(), result_type));
    log::LogEvent("tls_policy_testing_would_fail", log::Level::kWarn)
        .Add("domain", domain)
        .Add("relay", label)
        .Add("result", result_type)
        .Add("detail", detail)
        .Emit();
  }
  void PlaintextFallback(const std::string& domain, const std::string& label) override {
    w_->metrics_->Add(metrics::kOutboundPlaintextFallbacks, 0);
    log::LogEvent("tls_fallback_plaintext", log::Level::kWarn)
        .Add("domain", domain)
        .Add("relay", label)
        .Emit();
  }
  void MessageSent(const queue::DeliveryJob& job, const std::string& label, const std::string& tls,
                   const std::string& tls_version, const std::string& cipher,
                   const std::string& verification, const std::string& reply) override {
    w_->metrics_->Add(metrics::kOutboundSessions,
                      metrics::NameIndex(metrics::OutboundTlsNames(), tls));
    log::LogEvent("sent")
        .Add("queue_id", job.queue_id)
        .Add("domain", job.domain)
        .Add("relay", label)
        .Add("tls", tls_version.empty() ? "none" : tls_version)
        .Add("cipher", cipher)
        .Add("verification", verification)
        .Add("reply", reply)
        .Emit();
  }
  void ConnectionsChanged(size_t open) override {
    w_->metrics_->Set(metrics::kOutboundConnectionsActive, 0, open);
  }

 private:
  Worker* w_;
};

int64_t Worker::NowMs() const { return MonotonicMs(); }

void Worker::AdoptShards(const ipc::v1::WorkerSetup& setup) {
  // A spool directory left without a worker (fewer workers than before) is
  // merged into this shard's spool: copied in batches (one fsync each), then
  // removed from the old one. A crash in between leaves a message in both;
  // the copy is skipped when it is already here, so nothing is delivered
  // twice and nothing is lost. Queue ids carry their original shard, so they
  // cannot collide.
  for (uint32_t shard : setup.adopted_shards()) {
    const std::filesystem::path dir =
        std::filesystem::path(setup.config().node().data_dir()) / "spool" / std::to_string(shard);
    std::error_code ec;
    if (!std::filesystem::exists(dir / "CURRENT", ec)) continue;
    auto other = queue::SpoolStore::Open(dir.string(), queue::SpoolOptions{});
    if (!other.ok()) {
      log::LogEvent("adopt_failed", log::Level::kWarn)
          .Add("shard", static_cast<int64_t>(shard))
          .Add("error", std::string(other.status().message()))
          .Emit();
      continue;
    }
    std::vector<queue::SpoolRecord> copies;
    std::vector<queue::SpoolMutation> removals;
    int64_t moved = 0;
    auto flush = [&]() -> absl::Status {
      if (absl::Status s = store_->WriteBatch(copies); !s.ok()) return s;
      if (absl::Status s = (*other)->Apply({}, removals); !s.ok()) return s;
      moved += static_cast<int64_t>(removals.size());
      copies.clear();
      removals.clear();
      return absl::OkStatus();
    };
    absl::Status st = (*other)->ForEachEnvelope([&](const queue::v1::Envelope& e) -> absl::Status {
      if (!store_->ReadEnvelope(e.queue_id()).ok()) {
        auto body = (*other)->ReadBody(e.queue_id());
        if (!body.ok()) return absl::OkStatus();  // leave it there, reported below
        copies.push_back(queue::SpoolRecord{e, std::move(*body)});
      }
      queue::SpoolMutation m;
      m.envelope.set_queue_id(e.queue_id());
      m.remove = true;
      m.old_due_ms = queue::SpoolStore::IsScheduled(e) ? queue::SpoolStore::DueMs(e) : -1;
      removals.push_back(std::move(m));
      return removals.size() >= 512 ? flush() : absl::OkStatus();
    });
    if (st.ok()) st = flush();
    log::LogEvent(st.ok() ? "shard_adopted" : "adopt_failed",
                  st.ok() ? log::Level::kInfo : log::Level::kWarn)
        .Add("shard", static_cast<int64_t>(shard))
        .Add("messages", moved)
        .Add("error", st.ok() ? "" : std::string(st.message()))
        .Emit();
  }
}

int64_t Worker::GreetDelayMs() const { return DurationMs(config_.limits().greet_delay()); }

absl::Status Worker::Init(const ipc::v1::WorkerSetup& setup) {
  shard_ = setup.shard();
  absl::Status st = ring_.Init(kRingEntries, kRecvBuffers, kRecvBufferSize);
  if (!st.ok()) return st;

  std::filesystem::path spool_dir =
      std::filesystem::path(setup.config().node().data_dir()) / "spool" / std::to_string(shard_);
  auto store = queue::SpoolStore::Open(spool_dir.string(), queue::SpoolOptions{});
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  ids_ = std::make_unique<queue::QueueIdGenerator>(shard_);
  ids_->AdvancePast(store_->LastId());
  AdoptShards(setup);
  writer_ = std::make_unique<queue::SpoolWriter>(store_.get());

  st = ApplyConfig(setup, /*first=*/true);
  if (!st.ok()) return st;

  auto outbound = BuildOutbound(config_);
  if (!outbound.ok()) return outbound.status();
  DnsResolverOptions dns_options;
  dns_options.servers.assign(config_.dns().servers().begin(), config_.dns().servers().end());
  auto resolver = DnsResolver::Create(dns_options);
  if (!resolver.ok()) return resolver.status();
  outbound_events_ = std::make_unique<OutboundEvents>(this);
  transport_ = std::make_unique<OutboundTransport>(
      &ring_, std::move(outbound->options), std::move(outbound->policy),
      std::move(outbound->routes), std::move(*resolver), outbound_events_.get());

  queue::QueueManagerOptions queue_options;
  queue_options.hostname = config_.node().hostname();
  queue_options.hold = config_.delivery().hold();
  queue_events_ = std::make_unique<QueueEvents>(this);
  queue_ = std::make_unique<queue::QueueManager>(
      store_.get(), writer_.get(), transport_.get(),
      queue::RetrySchedule::FromConfig(config_.delivery()), queue_options,
      [] { return absl::Now(); }, [this] { return ids_->Next(); }, queue_events_.get());
  if (absl::Status recovered = queue_->Recover(); !recovered.ok()) return recovered;

  for (int i = 0; i < setup.config().listeners_size(); ++i) {
    const config::v1::Listener& lc = setup.config().listeners(i);
    auto addr = ParseSocketAddress(lc.address());
    if (!addr.ok()) return addr.status();
    auto fd = OpenListenSocket(*addr, kListenBacklog);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(), "listener " + lc.name() + " on " + lc.address() +
                                                  ": " + std::string(fd.status().message()));
    }
    auto l = std::make_unique<Listener>();
    l->index = static_cast<size_t>(i);
    l->name = lc.name();
    l->fd = *fd;
    l->op = std::make_unique<AcceptOp>(this, l.get());
    ring_.Accept(l->fd, l->op.get());
    l->armed = true;
    listeners_.push_back(std::move(l));
  }

  tick_ = std::make_unique<TickOp>(this);
  ring_.Timeout(&tick_->ts, tick_.get());
  spool_event_ = std::make_unique<SpoolEventOp>(this);
  ring_.Read(writer_->completion_eventfd(), &spool_event_->value, sizeof(uint64_t),
             spool_event_.get());
  ipc_op_ = std::make_unique<IpcOp>(this);
  ring_.Recv(ipc_fd_, ipc_op_.get());
  verifier_ = std::make_unique<AuthVerifier>(users_);
  auth_event_ = std::make_unique<AuthEventOp>(this);
  ring_.Read(verifier_->completion_eventfd(), &auth_event_->value, sizeof(uint64_t),
             auth_event_.get());

  UpdateQueueGauges();
  metrics_->Set(metrics::kWorkerUp, 0, 1);

  ipc::v1::WorkerToSupervisor ready;
  ready.mutable_ready()->set_shard(shard_);
  ready.mutable_ready()->set_pid(static_cast<uint32_t>(getpid()));
  SendToSupervisor(ready);
  log::LogEvent("worker_ready")
      .Add("listeners", static_cast<int64_t>(listeners_.size()))
      .Add("spooled", static_cast<int64_t>(queue_->depth()))
      .Emit();
  return absl::OkStatus();
}

namespace {

bool ListenersUseTls(const config::v1::Config& c) {
  for (const auto& l : c.listeners()) {
    if (l.tls() != config::v1::LISTENER_TLS_NONE) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<TlsServerContext>> BuildTls(const config::v1::Config& c,
                                                           bool client_certs) {
  TlsServerOptions options;
  for (const auto& cert : c.tls().certificates()) {
    options.certificates.push_back(CertKeyPair{cert.cert_file(), cert.key_file()});
  }
  options.min_version = c.tls().min_version() == config::v1::TLS_VERSION_1_3 ? TlsVersion::kTls13
                                                                             : TlsVersion::kTls12;
  switch (c.tls().ciphers()) {
    case config::v1::CIPHER_CLASS_STRONG:
      options.ciphers = CipherClass::kStrong;
      break;
    case config::v1::CIPHER_CLASS_COMPAT:
      options.ciphers = CipherClass::kCompat;
      break;
    default:
      options.ciphers = CipherClass::kPfs;
  }
  options.request_client_cert = client_certs;
  return TlsServerContext::Create(options);
}

}  // namespace

absl::StatusOr<Worker::OutboundSetup> Worker::BuildOutbound(const config::v1::Config& c) {
  OutboundSetup out;
  out.options.helo_name = c.node().hostname();
  out.options.smtp_port = static_cast<uint16_t>(c.delivery().smtp_port());
  out.options.destination_concurrency = c.delivery().destination_concurrency();
  out.options.max_connections = c.delivery().max_outbound_connections();
  auto policy = OutboundPolicy::FromConfig(c);
  if (!policy.ok()) return policy.status();
  out.policy = std::move(*policy);
  std::vector<RouteConfig> routes;
  for (const auto& r : c.routes()) routes.push_back(RouteConfig{r.domain(), r.next_hop()});
  auto table = RouteTable::Create(routes, out.options.smtp_port);
  if (!table.ok()) return table.status();
  out.routes = std::move(*table);
  return out;
}

absl::Status Worker::ApplyConfig(const ipc::v1::WorkerSetup& setup, bool first) {
  // Build every policy object first and swap only when all succeeded: a
  // refused snapshot leaves the last good configuration untouched.
  const config::v1::Config& c = setup.config();
  std::vector<std::string> domains(c.relay().accepted_domains().begin(),
                                   c.relay().accepted_domains().end());
  std::vector<std::string> networks(c.relay().trusted_networks().begin(),
                                    c.relay().trusted_networks().end());
  auto relay = RelayPolicy::Create(domains, networks);
  if (!relay.ok()) return relay.status();

  std::vector<PartnerRule> partners;
  for (const auto& p : c.partners()) {
    PartnerRule rule;
    rule.domain = p.domain();
    rule.require_tls = p.inbound().require_tls();
    rule.pins.assign(p.inbound().pins().begin(), p.inbound().pins().end());
    partners.push_back(std::move(rule));
  }
  auto inbound = InboundPolicy::Create(
      std::move(partners), std::vector<std::string>(c.relay().require_tls_domains().begin(),
                                                    c.relay().require_tls_domains().end()));
  if (!inbound.ok()) return inbound.status();

  std::unique_ptr<TlsServerContext> tls;
  if (ListenersUseTls(c)) {
    auto built = BuildTls(c, inbound->wants_client_certs());
    if (!built.ok()) return built.status();
    tls = std::move(*built);
    const std::string& key = setup.tls_ticket_key().empty() ? ticket_key_ : setup.tls_ticket_key();
    if (!key.empty()) {
      absl::Status st = tls->RotateTicketKeys(key);
      if (!st.ok()) return st;
      ticket_key_ = key;
    }
  }

  std::shared_ptr<const UserDb> users;
  if (!c.relay().users_file().empty()) {
    auto db = UserDb::Load(c.relay().users_file());
    if (!db.ok()) return db.status();
    users = std::move(*db);
  }

  if (!first && c.listeners_size() != config_.listeners_size()) {
    log::LogEvent("reconfigure_listeners_ignored", log::Level::kWarn)
        .Add("reason", "listener changes take effect when the worker restarts")
        .Emit();
  }
  // Sessions already open keep the objects they started with (they hold
  // pointers into them), so the old ones are retired, not freed.
  if (relay_) retired_relays_.push_back(std::move(relay_));
  relay_ = std::make_unique<RelayPolicy>(std::move(*relay));
  if (inbound_) retired_inbound_.push_back(std::move(inbound_));
  inbound_ = std::make_unique<InboundPolicy>(std::move(*inbound));
  if (tls_) retired_tls_.push_back(std::move(tls_));
  tls_ = std::move(tls);
  users_ = users;
  if (verifier_) verifier_->SetUserDb(users_);

  config_ = c;
  config_version_ = setup.config_version();
  ConnectionLimits limits;
  limits.max_per_ip = static_cast<int>(c.limits().max_connections_per_ip());
  limits.max_rate_per_ip = static_cast<int>(c.limits().max_connection_rate_per_ip());
  // The per-worker cap is enforced at accept, before any PROXY header.
  limits.max_total = 0;
  if (limiter_) {
    limiter_->SetLimits(limits);
  } else {
    limiter_ = std::make_unique<ConnectionLimiter>(limits);
  }
  if (queue_) {
    auto outbound = BuildOutbound(c);
    if (!outbound.ok()) return outbound.status();
    transport_->Reconfigure(std::move(outbound->options), std::move(outbound->policy),
                            std::move(outbound->routes));
    queue_->set_hold(c.delivery().hold() || draining_);
    queue_->set_schedule(queue::RetrySchedule::FromConfig(c.delivery()));
  }
  metrics_->Set(metrics::kPolicyVersion, 0, config_version_);
  return absl::OkStatus();
}

absl::Status Worker::Run() {
  while (!done_) {
    RunDeferred();
    absl::Status st = ring_.RunOnce();
    if (!st.ok()) return st;
    ReapConnections();
    if (draining_ && connections_.empty() && !done_ &&
        (transport_->open_connections() == 0 || NowMs() >= drain_deadline_ms_)) {
      // Everything answered: flush the spool and say goodbye.
      verifier_->Stop();
      writer_->Stop();
      OnSpoolEvent(0);
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

void Worker::OnAccept(Listener* l, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) l->armed = false;
  if (res >= 0) {
    int fd = res;
    if (draining_ ||
        connections_.size() >= static_cast<size_t>(config_.limits().max_connections())) {
      metrics_->Add(metrics::kConnectionsRefused, l->index);
      static constexpr char kBusy[] = "421 4.7.0 Too many connections\r\n";
      // Best effort on a fresh socket: its send buffer is empty, so this
      // never blocks.
      send(fd, kBusy, sizeof kBusy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      ring_.Close(fd);
    } else {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
      ConnectionSetup setup;
      setup.id = next_connection_id_++;
      setup.listener_index = l->index;
      setup.listener_name = l->name;
      setup.proxy_protocol = config_.listeners(static_cast<int>(l->index)).proxy_protocol();
      setup.implicit_tls =
          config_.listeners(static_cast<int>(l->index)).tls() == config::v1::LISTENER_TLS_IMPLICIT;
      setup.socket_ip = AddressIp(peer);
      setup.socket_port = AddressPort(peer);
      log::LogEvent("connect")
          .Add("conn", static_cast<int64_t>(setup.id))
          .Add("listener", l->name)
          .Add(setup.proxy_protocol ? "peer" : "client", setup.socket_ip)
          .Emit();
      uint64_t id = setup.id;
      auto conn = std::make_unique<SmtpConnection>(this, &ring_, fd, std::move(setup), NowMs());
      SmtpConnection* raw = conn.get();
      connections_.emplace(id, std::move(conn));
      metrics_->Add(metrics::kConnectionsAccepted, l->index);
      metrics_->Add(metrics::kConnectionsActive, l->index);
      raw->Start();
    }
  } else if (res != -ECANCELED && res != -EINVAL && res != -EBADF) {
    log::LogEvent("accept_failed", log::Level::kWarn).Add("errno", -res).Emit();
  }
  if (!l->armed && !draining_ && l->fd >= 0) {
    ring_.Accept(l->fd, l->op.get());
    l->armed = true;
  }
}

bool Worker::Admit(SmtpConnection* conn) {
  if (relay_->IsTrusted(conn->client_ip())) return true;
  ConnectionLimiter::Admission a = limiter_->Admit(conn->client_ip(), NowMs());
  if (a == ConnectionLimiter::Admission::kOk) {
    limited_.insert(conn->id());
    return true;
  }
  metrics_->Add(metrics::kConnectionsRefused, conn->listener_index());
  log::LogEvent("connection_refused", log::Level::kWarn)
      .Add("conn", static_cast<int64_t>(conn->id()))
      .Add("client", conn->client_ip())
      .Add("reason", a == ConnectionLimiter::Admission::kRateExceeded ? "rate" : "concurrency")
      .Emit();
  return false;
}

SessionContext Worker::MakeSessionContext(size_t listener_index, const std::string& client_ip,
                                          uint16_t client_port) const {
  SessionContext ctx;
  ctx.hostname = config_.node().hostname();
  ctx.listener = config_.listeners(static_cast<int>(listener_index)).name();
  ctx.client_ip = client_ip;
  ctx.client_port = client_port;
  ctx.relay = relay_.get();
  ctx.limits.max_message_size = config_.limits().max_message_size();
  ctx.limits.max_recipients = config_.limits().max_recipients();
  const config::v1::Listener& l = config_.listeners(static_cast<int>(listener_index));
  switch (l.tls()) {
    case config::v1::LISTENER_TLS_OFFER:
      ctx.tls_mode = SessionContext::TlsMode::kOffer;
      break;
    case config::v1::LISTENER_TLS_REQUIRE:
      ctx.tls_mode = SessionContext::TlsMode::kRequire;
      break;
    case config::v1::LISTENER_TLS_IMPLICIT:
      ctx.tls_mode = SessionContext::TlsMode::kImplicit;
      break;
    default:
      ctx.tls_mode = SessionContext::TlsMode::kNone;
  }
  ctx.auth_enabled = l.auth() == config::v1::LISTENER_AUTH_AFTER_TLS;
  ctx.sender_login_match = config_.relay().sender_login_match();
  ctx.inbound = inbound_.get();
  return ctx;
}

std::string Worker::NextQueueId() { return ids_->Next(); }

void Worker::Spool(SmtpConnection* conn, const std::string& queue_id, AcceptedMessage msg) {
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
  absl::Time now = absl::Now();
  env.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(now));
  env.mutable_arrival_time()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(absl::ToUnixSeconds(now)))));
  env.set_helo(msg.helo);
  env.set_client_address(conn->client_ip());
  env.set_listener(config_.listeners(static_cast<int>(conn->listener_index())).name());
  env.set_body_size(msg.body.size());
  env.set_shard(shard_);
  env.set_smtputf8(msg.smtputf8);
  env.set_eight_bit_mime(msg.eight_bit_mime);
  // Due at once; the index key is written in the same batch.
  *env.mutable_schedule()->mutable_next_attempt() = env.arrival_time();
  record.body = std::move(msg.body);
  // The token carries the connection id: if the connection is gone when the
  // write completes, the message is still spooled and nobody is answered.
  // The completion hands the record back, so nothing is kept meanwhile.
  writer_->Submit(conn->id(), std::move(record));
}

void Worker::OnSpoolEvent(int res) {
  for (queue::SpoolCompletion& c : writer_->TakeCompletions()) {
    metrics_->Observe(metrics::kSpoolWriteSeconds, 0, absl::ToDoubleSeconds(c.latency));
    if ((c.token & queue::QueueManager::kTokenBit) != 0) {
      queue_->OnWriteDone(c);
      continue;
    }
    metrics_->Observe(metrics::kSpoolBatchMessages, 0, c.batch_size);
    const queue::v1::Envelope& env = c.record.envelope;
    const std::string queue_id = env.queue_id();  // the record moves on below
    auto it = connections_.find(c.token);
    if (!c.status.ok()) {
      metrics_->Add(metrics::kSpoolWriteErrors, 0);
      log::LogEvent("spool_write_failed", log::Level::kError)
          .Add("queue_id", queue_id)
          .Add("error", std::string(c.status.message()))
          .Emit();
    } else if (it != connections_.end()) {
      metrics_->Add(metrics::kMessagesAccepted, it->second->listener_index());
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
    if (c.status.ok()) {
      queue_->OnSpooled(std::move(c.record));
      UpdateQueueGauges();
    }
    if (it != connections_.end()) it->second->SpoolDone(c.status, queue_id);
  }
  if (!done_ && !(draining_ && connections_.empty())) {
    ring_.Read(writer_->completion_eventfd(), &spool_event_->value, sizeof(uint64_t),
               spool_event_.get());
  }
}

void Worker::ConnectionClosing(SmtpConnection* conn) {
  closing_ids_.push_back(conn->id());
  if (limited_.erase(conn->id()) > 0) limiter_->Release(conn->client_ip());
  metrics_->Set(metrics::kConnectionsActive, conn->listener_index(),
                metrics_->Get(metrics::kConnectionsActive, conn->listener_index()) - 1);
}

void Worker::ReapConnections() {
  for (size_t i = 0; i < closing_ids_.size();) {
    auto it = connections_.find(closing_ids_[i]);
    if (it == connections_.end()) {
      closing_ids_[i] = closing_ids_.back();
      closing_ids_.pop_back();
      continue;
    }
    if (it->second->Finished()) {
      log::LogEvent("disconnect").Add("conn", static_cast<int64_t>(it->first)).Emit();
      connections_.erase(it);
      closing_ids_[i] = closing_ids_.back();
      closing_ids_.pop_back();
      continue;
    }
    ++i;
  }
}

void Worker::CheckAuth(SmtpConnection* conn, AuthRequest request) {
  int64_t now = NowMs();
  if (!auth_throttle_.Allowed(conn->client_ip(), now)) {
    metrics_->Add(metrics::kAuthAttempts, metrics::AuthResultIndex("throttled"));
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

void Worker::RunDeferred() {
  std::vector<std::pair<uint64_t, AuthOutcome>> todo;
  todo.swap(deferred_auth_);
  for (const auto& [id, outcome] : todo) {
    auto it = connections_.find(id);
    if (it != connections_.end()) it->second->AuthDone(outcome, {});
  }
}

void Worker::OnAuthEvent(int res) {
  for (AuthResult& r : verifier_->TakeCompletions()) {
    auto it = connections_.find(r.token);
    AuthOutcome outcome = AuthOutcome::kTempFail;
    std::string result = "failed";
    if (r.verdict == AuthResult::Verdict::kOk) {
      outcome = AuthOutcome::kOk;
      result = "ok";
    } else if (r.verdict == AuthResult::Verdict::kBad) {
      outcome = AuthOutcome::kBad;
    }
    metrics_->Add(metrics::kAuthAttempts, metrics::AuthResultIndex(result));
    if (it == connections_.end()) continue;
    const std::string& ip = it->second->client_ip();
    if (outcome == AuthOutcome::kOk) auth_throttle_.Succeeded(ip);
    if (outcome == AuthOutcome::kBad) auth_throttle_.Failed(ip, NowMs());
    log::LogEvent("auth", outcome == AuthOutcome::kOk ? log::Level::kInfo : log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(r.token))
        .Add("client", ip)
        .Add("result", result)
        .Emit();
    it->second->AuthDone(outcome, std::move(r.domains));
  }
  if (!done_) {
    ring_.Read(verifier_->completion_eventfd(), &auth_event_->value, sizeof(uint64_t),
               auth_event_.get());
  }
}

namespace {

// BoringSSL's failure reasons, folded into the bounded label set of
// postern_tls_handshakes_total.
std::string TlsFailureClass(const std::string& reason) {
  auto has = [&reason](const char* s) { return reason.find(s) != std::string::npos; };
  if (reason == "eof" || has("unexpected eof")) return "eof";
  if (reason == "timeout") return "timeout";
  if (has("version") || has("protocol")) return "protocol_version";
  if (has("no shared cipher") || has("handshake failure") || has("no cipher")) {
    return "no_shared_cipher";
  }
  if (has("certificate")) return "bad_certificate";
  return "other";
}

}  // namespace

// The tls.ciphers class a negotiated suite belongs to: TLS 1.3 suites and
// ECDHE with an AEAD are "strong", ECDHE with CBC "pfs", RSA key exchange
// "compat".
static std::string CipherClassOf(const std::string& version, const std::string& cipher) {
  if (version == "TLSv1.3") return "strong";
  bool ecdhe = cipher.find("ECDHE") != std::string::npos;
  bool aead =
      cipher.find("GCM") != std::string::npos || cipher.find("CHACHA20") != std::string::npos;
  if (ecdhe) return aead ? "strong" : "pfs";
  return "compat";
}

void Worker::CountTlsHandshake(size_t listener, const std::string& version,
                               const std::string& cipher, const std::string& failure) {
  metrics_->Add(metrics::kTlsHandshakes,
                metrics::ListenerTlsIndex(listener, version,
                                          failure.empty() ? CipherClassOf(version, cipher) : "",
                                          failure.empty() ? "" : TlsFailureClass(failure)));
}

void Worker::CountStartTlsDiscarded(size_t listener, uint64_t bytes) {
  metrics_->Add(metrics::kStartTlsDiscardedBytes, listener, bytes);
  log::LogEvent("starttls_injection_discarded", log::Level::kWarn)
      .Add("bytes", static_cast<int64_t>(bytes))
      .Emit();
}

void Worker::CountCommands(const std::array<uint64_t, kCommandVerbCount>& counts) {
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    metrics_->Add(metrics::kSmtpCommands,
                  metrics::VerbIndex(CommandVerbName(static_cast<CommandVerb>(i))), counts[i]);
  }
}

void Worker::CountReceived(size_t listener, uint64_t bytes) {
  metrics_->Add(metrics::kBytesReceived, listener, bytes);
}

void Worker::CountRejection(const std::string& reason) {
  metrics_->Add(metrics::kMessagesRejected, metrics::RejectReasonIndex(reason));
}

void Worker::OnTick() {
  int64_t now = NowMs();
  limiter_->Sweep(now);
  int64_t command_ms = DurationMs(config_.limits().command_timeout());
  int64_t data_ms = DurationMs(config_.limits().data_timeout());
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
    int64_t data_started = conn->data_started_ms();
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
  queue_->Tick();
  UpdateQueueGauges();
  if (!done_) ring_.Timeout(&tick_->ts, tick_.get());
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
        StartDrain(NowMs());
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
    StartDrain(NowMs() + 5000);
    return;
  }
  if (!more && !done_) ring_.Recv(ipc_fd_, ipc_op_.get());
}

void Worker::HandleIpcMessage(const ipc::v1::SupervisorToWorker& msg) {
  if (msg.has_reconfigure()) {
    absl::Status st = ApplyConfig(msg.reconfigure(), /*first=*/false);
    ipc::v1::WorkerToSupervisor ack;
    ack.mutable_config_ack()->set_config_version(msg.reconfigure().config_version());
    ack.mutable_config_ack()->set_applied(st.ok());
    if (!st.ok()) ack.mutable_config_ack()->set_error(std::string(st.message()));
    SendToSupervisor(ack);
    log::LogEvent(st.ok() ? "config_applied" : "config_refused",
                  st.ok() ? log::Level::kInfo : log::Level::kWarn)
        .Add("version", static_cast<int64_t>(msg.reconfigure().config_version()))
        .Emit();
  } else if (msg.has_ticket_key()) {
    ticket_key_ = msg.ticket_key().material();
    if (tls_) {
      absl::Status st = tls_->RotateTicketKeys(ticket_key_);
      if (!st.ok()) {
        log::LogEvent("ticket_key_refused", log::Level::kWarn)
            .Add("error", std::string(st.message()))
            .Emit();
      }
    }
  } else if (msg.has_drain()) {
    StartDrain(NowMs() + static_cast<int64_t>(msg.drain().deadline_ms()));
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
    return;
  }
  draining_ = true;
  drain_deadline_ms_ = deadline_ms;
  log::LogEvent("draining").Add("open_sessions", static_cast<int64_t>(connections_.size())).Emit();
  // Stop accepting: closing the listening sockets ends the multishot accepts
  // and lets the kernel steer new connections to workers still listening.
  for (auto& l : listeners_) {
    if (l->armed) ring_.Cancel(l->op.get());
    close(l->fd);
    l->fd = -1;
  }
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
