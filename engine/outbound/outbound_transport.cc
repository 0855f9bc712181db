#include "engine/outbound/outbound_transport.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace postern::engine {
namespace {

using queue::AttemptResult;

AddressPlan FailedPlan(PlanKind kind, std::string status, std::string diagnostic) {
  AddressPlan plan;
  plan.kind = kind;
  plan.status = std::move(status);
  plan.diagnostic = std::move(diagnostic);
  return plan;
}

AddressPlan NoResolver() {
  return FailedPlan(PlanKind::kTemporary, "4.4.3", "no DNS resolver configured");
}

TlsClientOptions ClientOptionsFor(const DomainTlsPolicy& p) {
  TlsClientOptions o;
  o.min_version =
      p.min_version == config::v1::TLS_VERSION_1_3 ? TlsVersion::kTls13 : TlsVersion::kTls12;
  switch (p.ciphers) {
    case config::v1::CIPHER_CLASS_PFS:
      o.ciphers = CipherClass::kPfs;
      break;
    case config::v1::CIPHER_CLASS_STRONG:
      o.ciphers = CipherClass::kStrong;
      break;
    default:
      o.ciphers = CipherClass::kCompat;
  }
  // verify needs the chain checked; testing-mode verify too, to report.
  o.verify_peer = p.mode == config::v1::OUTBOUND_TLS_MODE_VERIFY;
  o.ca_file = p.ca_file;
  return o;
}

}  // namespace

// One per recipient domain (Postfix's destination queue).
struct DestinationQueue {
  std::string domain;
  std::deque<OutboundJob> waiting;
  size_t open = 0;  // connections of this destination
  std::vector<OutboundConnection*> idle;
  bool resolving = false;
  std::vector<HostAddress> addresses;
  int64_t plan_expires_ms = 0;
};

// Drives the resolver's sockets and timer through the ring.
class OutboundTransport::DnsDriver {
 public:
  DnsDriver(IoRing* ring, DnsResolver* resolver) : ring_(ring), resolver_(resolver) {
    resolver_->set_interest_callback([this](int fd, bool read, bool write) {
      Interest& i = fds_[fd];
      i.read = read;
      i.write = write;
    });
  }

  // Arms polls for sockets c-ares waits on and a timer for its deadline.
  void Arm() {
    // Ops retired by an earlier call have completed by now unless armed; an
    // op retired in this call may be the one running, so it waits a round.
    std::erase_if(retired_, [](const std::unique_ptr<PollOp>& op) { return !op->armed; });
    for (auto it = fds_.begin(); it != fds_.end();) {
      const int fd = it->first;
      Interest& i = it->second;
      if (!i.read && !i.write) {
        if (i.op) {
          if (i.op->armed) ring_->Cancel(i.op.get());
          i.op->retired = true;
          retired_.push_back(std::move(i.op));
        }
        it = fds_.erase(it);
        continue;
      }
      if (!i.op) i.op = std::make_unique<PollOp>(this, fd);
      if (!i.op->armed) {
        i.op->armed = true;
        ring_->Poll(fd, (i.read ? POLLIN : 0) | (i.write ? POLLOUT : 0), i.op.get());
      }
      ++it;
    }
    const int64_t wait = resolver_->NextTimeoutMs();
    if (wait < 0) return;
    // A result ready now (a cache hit) must not wait behind a long timer.
    TimerOp& t = wait == 0 ? immediate_ : timer_;
    if (t.armed) return;
    t.armed = true;
    t.ts.tv_sec = wait / 1000;
    t.ts.tv_nsec = (wait % 1000) * 1000000;
    ring_->Timeout(&t.ts, &t);
  }

 private:
  struct PollOp : IoOp {
    PollOp(DnsDriver* d, int fd) : d(d), fd(fd) {}
    void OnComplete(int res, uint32_t) override {
      armed = false;
      if (res == -ECANCELED || retired) return;
      d->resolver_->ProcessFd(fd, (res & (POLLIN | POLLERR | POLLHUP)) != 0 || res < 0,
                              (res & POLLOUT) != 0);
      d->Arm();
    }
    DnsDriver* d;
    int fd;
    bool armed = false;
    bool retired = false;  // c-ares closed the socket; freed by a later Arm()
  };
  struct TimerOp : IoOp {
    explicit TimerOp(DnsDriver* d) : d(d) {}
    void OnComplete(int, uint32_t) override {
      armed = false;
      d->resolver_->ProcessTimeouts();
      d->Arm();
    }
    DnsDriver* d;
    __kernel_timespec ts{};
    bool armed = false;
  };
  struct Interest {
    bool read = false;
    bool write = false;
    std::unique_ptr<PollOp> op;
  };

  IoRing* ring_;
  DnsResolver* resolver_;
  std::map<int, Interest> fds_;
  std::vector<std::unique_ptr<PollOp>> retired_;
  TimerOp timer_{this};
  TimerOp immediate_{this};
};

OutboundTransport::OutboundTransport(IoRing* ring, OutboundOptions options, OutboundPolicy policy,
                                     RouteTable routes, std::unique_ptr<DnsResolver> resolver,
                                     OutboundObserver* observer)
    : ring_(ring),
      options_(std::move(options)),
      policy_(std::move(policy)),
      routes_(std::move(routes)),
      resolver_(std::move(resolver)),
      observer_(observer),
      rng_(std::random_device{}()),
      now_ms_(MonotonicMs()) {
  if (resolver_) dns_driver_ = std::make_unique<DnsDriver>(ring_, resolver_.get());
}

OutboundTransport::~OutboundTransport() = default;

void OutboundTransport::Reconfigure(OutboundOptions options, OutboundPolicy policy,
                                    RouteTable routes) {
  options_ = std::move(options);
  policy_ = std::move(policy);
  routes_ = std::move(routes);
  for (auto& [domain, d] : destinations_) d->plan_expires_ms = 0;  // re-plan
}

DestinationQueue& OutboundTransport::Dest(const std::string& domain) {
  auto& slot = destinations_[domain];
  if (!slot) {
    slot = std::make_unique<DestinationQueue>();
    slot->domain = domain;
  }
  return *slot;
}

void OutboundTransport::Deliver(queue::DeliveryJob job, Done done) {
  now_ms_ = MonotonicMs();
  DestinationQueue& d = Dest(job.domain);
  d.waiting.push_back(OutboundJob{std::move(job), std::move(done)});
  Pump(d);
}

void OutboundTransport::Pump(DestinationQueue& d) {
  if (shutting_down_) {
    AttemptResult r;
    r.kind = AttemptResult::kTemporary;
    r.reason = queue::v1::DEFER_REASON_CONNECTION;
    r.status = "4.3.2";
    r.diagnostic = "delivery stopped: the node is shutting down";
    FailAll(d, r);
    return;
  }
  if (d.waiting.empty()) return;
  if (d.resolving) return;
  if (d.addresses.empty() || now_ms_ >= d.plan_expires_ms) {
    if (d.open == 0 || d.addresses.empty()) {
      Resolve(d);
      return;
    }
  }
  while (!d.waiting.empty() && !d.idle.empty()) {
    OutboundConnection* c = d.idle.back();
    d.idle.pop_back();
    OutboundJob job = std::move(d.waiting.front());
    d.waiting.pop_front();
    c->Assign(std::move(job));
  }
  while (!d.waiting.empty() && d.open < options_.destination_concurrency &&
         connections_.size() < options_.max_connections) {
    OutboundJob job = std::move(d.waiting.front());
    d.waiting.pop_front();
    StartConnection(&d, d.addresses, 0, false, AddressFailures{}, std::move(job));
  }
}

void OutboundTransport::StartConnection(DestinationQueue* d, std::vector<HostAddress> addresses,
                                        size_t index, bool plaintext_only, AddressFailures failures,
                                        OutboundJob job) {
  auto c = std::make_unique<OutboundConnection>(
      static_cast<OutboundConnectionHost*>(this), d, d->domain, policy_.For(d->domain),
      std::move(addresses), index, plaintext_only, std::move(failures));
  OutboundConnection* raw = c.get();
  connections_[raw] = std::move(c);
  ++d->open;
  observer_->ConnectionsChanged(connections_.size());
  raw->Start(std::move(job));
}

void OutboundTransport::Resolve(DestinationQueue& d) {
  d.resolving = true;
  const std::string domain = d.domain;
  if (auto plan = PlanWithoutDns(domain, routes_, options_.smtp_port)) {
    if (plan->kind != PlanKind::kOk) {
      PlanDone(domain, FailedPlan(plan->kind, plan->status, plan->diagnostic));
      return;
    }
    ResolveAddresses(domain, plan->hops);
    return;
  }
  if (!resolver_) {
    PlanDone(domain, NoResolver());
    return;
  }
  resolver_->LookupMx(domain, [this, domain](absl::StatusOr<std::vector<MxRecord>> mx) {
    NextHopPlan plan = PlanFromMx(domain, mx, options_.smtp_port, rng_);
    if (plan.kind != PlanKind::kOk) {
      PlanDone(domain, FailedPlan(plan.kind, plan.status, plan.diagnostic));
      return;
    }
    ResolveAddresses(domain, std::move(plan.hops));
  });
  dns_driver_->Arm();
}

void OutboundTransport::ResolveAddresses(const std::string& domain, std::vector<NextHop> hops) {
  auto answers = std::make_shared<AddressAnswers>();
  auto left = std::make_shared<size_t>(0);
  for (const NextHop& h : hops) {
    if (h.ip_literal) continue;
    if (answers->count(h.host) != 0) continue;
    answers->emplace(h.host, absl::UnavailableError("pending"));
    ++*left;
  }
  if (*left == 0) {
    PlanDone(domain, OrderDestinations(hops, *answers));
    return;
  }
  if (!resolver_) {
    PlanDone(domain, NoResolver());
    return;
  }
  auto shared_hops = std::make_shared<std::vector<NextHop>>(std::move(hops));
  for (const auto& [host, unused] : *answers) {
    const std::string name = host;
    resolver_->LookupAddresses(name, [this, domain, name, answers, left, shared_hops](
                                         absl::StatusOr<std::vector<std::string>> result) {
      (*answers)[name] = std::move(result);
      if (--*left == 0) PlanDone(domain, OrderDestinations(*shared_hops, *answers));
    });
  }
  dns_driver_->Arm();
}

void OutboundTransport::PlanDone(const std::string& domain, AddressPlan plan) {
  now_ms_ = MonotonicMs();
  DestinationQueue& d = Dest(domain);
  d.resolving = false;
  if (plan.kind != PlanKind::kOk) {
    AttemptResult r;
    r.kind =
        plan.kind == PlanKind::kPermanent ? AttemptResult::kPermanent : AttemptResult::kTemporary;
    r.reason = queue::v1::DEFER_REASON_DNS;
    r.status = plan.status;
    r.diagnostic = plan.diagnostic;
    d.addresses.clear();
    FailAll(d, r);
    return;
  }
  d.addresses = std::move(plan.destinations);
  d.plan_expires_ms = now_ms_ + options_.plan_ttl_ms;
  Pump(d);
}

void OutboundTransport::FailAll(DestinationQueue& d, const AttemptResult& result) {
  while (!d.waiting.empty()) {
    OutboundJob job = std::move(d.waiting.front());
    d.waiting.pop_front();
    ready_.emplace_back(std::move(job.done),
                        std::vector<AttemptResult>(job.job.recipients.size(), result));
  }
}

void OutboundTransport::JobFinished(OutboundJob job, std::vector<AttemptResult> results) {
  ready_.emplace_back(std::move(job.done), std::move(results));
}

std::optional<OutboundJob> OutboundTransport::NextJob(DestinationQueue* d) {
  if (d->waiting.empty() || shutting_down_) return std::nullopt;
  OutboundJob next = std::move(d->waiting.front());
  d->waiting.pop_front();
  return next;
}

void OutboundTransport::Requeue(DestinationQueue* d, OutboundJob job) {
  d->waiting.push_front(std::move(job));
}

void OutboundTransport::SetIdle(OutboundConnection* c, bool idle) {
  auto& v = c->destination()->idle;
  v.erase(std::remove(v.begin(), v.end(), c), v.end());
  if (idle) v.push_back(c);
}

void OutboundTransport::AfterCompletion() {
  DeliverReady();
  PumpClosed();
}

void OutboundTransport::ConnectionClosing(OutboundConnection* c) {
  DestinationQueue* d = c->destination();
  if (d->open > 0) --d->open;
  finished_.push_back(c);
  if (!d->waiting.empty()) to_pump_.push_back(d->domain);
}

void OutboundTransport::PumpClosed() {
  while (!to_pump_.empty()) {
    std::vector<std::string> domains = std::move(to_pump_);
    to_pump_.clear();
    for (const std::string& domain : domains) {
      auto it = destinations_.find(domain);
      if (it != destinations_.end()) Pump(*it->second);
    }
  }
}

void OutboundTransport::DeliverReady() {
  if (delivering_) return;
  delivering_ = true;
  // The queue manager may Deliver() again from a callback: take the list.
  while (!ready_.empty()) {
    auto batch = std::move(ready_);
    ready_.clear();
    for (auto& [done, results] : batch) done(std::move(results));
  }
  delivering_ = false;
}

void OutboundTransport::Reap() {
  for (auto it = finished_.begin(); it != finished_.end();) {
    if ((*it)->Finished()) {
      connections_.erase(*it);
      it = finished_.erase(it);
    } else {
      ++it;
    }
  }
  observer_->ConnectionsChanged(connections_.size());
}

void OutboundTransport::Tick(int64_t) {
  now_ms_ = MonotonicMs();
  std::vector<OutboundConnection*> all;
  all.reserve(connections_.size());
  for (auto& [raw, c] : connections_) all.push_back(raw);
  for (OutboundConnection* c : all) c->Tick(now_ms_);
  for (auto& [domain, d] : destinations_) {
    if (!d->waiting.empty()) Pump(*d);
  }
  DeliverReady();
  Reap();
  // Forget destinations with nothing going on.
  for (auto it = destinations_.begin(); it != destinations_.end();) {
    DestinationQueue& d = *it->second;
    if (d.waiting.empty() && d.open == 0 && !d.resolving && now_ms_ >= d.plan_expires_ms) {
      it = destinations_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(hosts_, [this](const auto& entry) {
    return entry.second.down_until_ms + options_.max_host_backoff_ms < now_ms_;
  });
  if (dns_driver_) dns_driver_->Arm();
}

void OutboundTransport::Shutdown() {
  shutting_down_ = true;
  std::vector<OutboundConnection*> all;
  for (auto& [raw, c] : connections_) all.push_back(raw);
  for (OutboundConnection* c : all) {
    if (c->idle()) c->Quit();
  }
  for (auto& [domain, d] : destinations_) Pump(*d);
  DeliverReady();
}

int64_t OutboundTransport::HostDownUntil(const std::string& key) const {
  auto it = hosts_.find(key);
  return it == hosts_.end() ? 0 : it->second.down_until_ms;
}

void OutboundTransport::HostFailed(const std::string& key) {
  HostState& h = hosts_[key];
  ++h.failures;
  int64_t backoff = options_.host_backoff_ms;
  for (int i = 1; i < h.failures && backoff < options_.max_host_backoff_ms; ++i) backoff *= 2;
  h.down_until_ms = now_ms_ + std::min(backoff, options_.max_host_backoff_ms);
}

void OutboundTransport::HostUp(const std::string& key) { hosts_.erase(key); }

absl::StatusOr<TlsClientContext*> OutboundTransport::ClientContext(const DomainTlsPolicy& p) {
  const TlsClientOptions o = ClientOptionsFor(p);
  const std::string key =
      absl::StrCat(o.verify_peer, "|", o.ca_file, "|", static_cast<int>(o.min_version), "|",
                   static_cast<int>(o.ciphers));
  auto& slot = tls_contexts_[key];
  if (!slot) {
    auto ctx = TlsClientContext::Create(o);
    if (!ctx.ok()) {
      tls_contexts_.erase(key);
      return ctx.status();
    }
    slot = std::move(*ctx);
  }
  return slot.get();
}

}  // namespace postern::engine
