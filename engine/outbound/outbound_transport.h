// OutboundTransport: the worker's SMTP client side. It takes delivery jobs
// from the queue manager (one destination domain of one message), finds the
// next hops (static route, else MX then A/AAAA through c-ares on the ring),
// opens, reuses and closes outbound connections, and runs SmtpClientSession
// over them with STARTTLS under the destination's policy
// (engine/outbound/outbound_policy.h, checked by engine/outbound/outbound_tls_check.h).
//
// Strategies:
// - Destinations: one per recipient domain, each with its waiting jobs, its
//   open connections (at most destination_concurrency) and its resolved
//   address list (kept for a minute; the resolver caches by TTL).
// - Connection reuse: a connection that finished a message takes the next
//   waiting job of its destination; idle ones are closed with QUIT after
//   idle_timeout. At most max_connections are open per worker.
// - Address order: as next_hop.h plans it. A connection tries the addresses
//   in order until one takes the message: connect errors, a refused greeting
//   and TLS failures move on to the next address; a reply to MAIL, RCPT or
//   DATA is the destination's answer and is final for this attempt.
// - Enforced TLS (require, verify, pin): no STARTTLS, a failed handshake, a
//   version below the minimum, a failed verification or a pin mismatch are
//   all "TLS unavailable" at that address; nothing is sent in plaintext. When
//   every address failed and one of them for TLS, the recipients are
//   deferred with reason tls_required and the RFC 8460 result type.
// - Opportunistic: STARTTLS when offered; if the handshake fails, the same
//   address is tried again in plaintext on a new connection (counted).
// - Testing policies run opportunistic and log and count what their real
//   mode would have refused.
//
// Threading: the worker's loop thread. Owned by the worker; destroyed only
// after the ring stops dispatching (ops of open connections are in flight).
#ifndef POSTERN_ENGINE_OUTBOUND_OUTBOUND_TRANSPORT_H_
#define POSTERN_ENGINE_OUTBOUND_OUTBOUND_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/net/io_ring.h"
#include "engine/outbound/dns_resolver.h"
#include "engine/outbound/next_hop.h"
#include "engine/outbound/outbound_connection.h"
#include "engine/outbound/outbound_policy.h"
#include "engine/tls/tls_client_context.h"
#include "queue/delivery_transport.h"

namespace postern::engine {

class OutboundTransport : public queue::DeliveryTransport, private OutboundConnectionHost {
 public:
  // `resolver` may be null when every destination has a static route or is
  // an address literal (tests); an MX lookup then fails temporarily.
  OutboundTransport(IoRing* ring, OutboundOptions options, OutboundPolicy policy, RouteTable routes,
                    std::unique_ptr<DnsResolver> resolver, OutboundObserver* observer);
  ~OutboundTransport() override;

  void Deliver(queue::DeliveryJob job, Done done) override;
  void Tick(int64_t now_ms) override;
  void Shutdown() override;

  // A reload: new jobs use the new policy and routes.
  void Reconfigure(OutboundOptions options, OutboundPolicy policy, RouteTable routes);

  size_t open_connections() const { return connections_.size(); }

  class DnsDriver;

 private:
  // OutboundConnectionHost
  IoRing* ring() override { return ring_; }
  int64_t NowMs() const override { return now_ms_; }
  const OutboundOptions& options() const override { return options_; }
  OutboundObserver* observer() override { return observer_; }
  absl::StatusOr<TlsClientContext*> ClientContext(const DomainTlsPolicy& policy) override;
  int64_t HostDownUntil(const std::string& key) const override;
  void HostFailed(const std::string& key) override;
  void HostUp(const std::string& key) override;
  // A job is done: its results go to the queue manager after the current
  // completion.
  void JobFinished(OutboundJob job, std::vector<queue::AttemptResult> results) override;
  std::optional<OutboundJob> NextJob(DestinationQueue* d) override;
  void Requeue(DestinationQueue* d, OutboundJob job) override;
  void StartConnection(DestinationQueue* d, std::vector<HostAddress> addresses, size_t index,
                       bool plaintext_only, AddressFailures failures, OutboundJob job) override;
  void SetIdle(OutboundConnection* c, bool idle) override;
  void ConnectionClosing(OutboundConnection* c) override;
  void AfterCompletion() override;

  DestinationQueue& Dest(const std::string& domain);
  void Pump(DestinationQueue& d);
  void Resolve(DestinationQueue& d);
  void ResolveAddresses(const std::string& domain, std::vector<NextHop> hops);
  void PlanDone(const std::string& domain, AddressPlan plan);
  void FailAll(DestinationQueue& d, const queue::AttemptResult& result);
  struct HostState {
    int failures = 0;
    int64_t down_until_ms = 0;
  };
  std::map<std::string, HostState> hosts_;
  void Reap();

  IoRing* const ring_;
  OutboundOptions options_;
  OutboundPolicy policy_;
  RouteTable routes_;
  std::unique_ptr<DnsResolver> resolver_;
  std::unique_ptr<DnsDriver> dns_driver_;
  OutboundObserver* const observer_;
  std::mt19937_64 rng_;
  int64_t now_ms_ = 0;
  bool shutting_down_ = false;

  std::map<std::string, std::unique_ptr<DestinationQueue>> destinations_;
  std::map<OutboundConnection*, std::unique_ptr<OutboundConnection>> connections_;
  std::vector<OutboundConnection*> finished_;  // closed, waiting for their ops to drain
  std::map<std::string, std::unique_ptr<TlsClientContext>> tls_contexts_;
  // Results are handed to the queue manager from the tick or a completion,
  // never from inside Deliver() (the DeliveryTransport contract).
  std::vector<std::pair<Done, std::vector<queue::AttemptResult>>> ready_;
  bool delivering_ = false;
  void DeliverReady();
  // Destinations with waiting jobs whose connection closed: pumped at the
  // end of the ring completion, not from inside the closing connection.
  std::vector<std::string> to_pump_;
  void PumpClosed();
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_OUTBOUND_TRANSPORT_H_
