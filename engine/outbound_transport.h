// OutboundTransport: the worker's SMTP client side. It takes delivery jobs
// from the queue manager (one destination domain of one message), finds the
// next hops (static route, else MX then A/AAAA through c-ares on the ring),
// opens, reuses and closes outbound connections, and runs SmtpClientSession
// over them with STARTTLS under the destination's policy
// (engine/outbound_policy.h, checked by engine/outbound_tls_check.h).
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
#ifndef POSTERN_ENGINE_OUTBOUND_TRANSPORT_H_
#define POSTERN_ENGINE_OUTBOUND_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/dns_resolver.h"
#include "engine/io_ring.h"
#include "engine/next_hop.h"
#include "engine/outbound_policy.h"
#include "engine/tls_client_context.h"
#include "queue/delivery_transport.h"

namespace postern::engine {

struct OutboundOptions {
  std::string helo_name;
  uint16_t smtp_port = 25;
  size_t destination_concurrency = 20;
  size_t max_connections = 500;
  int64_t connect_timeout_ms = 30000;
  int64_t command_timeout_ms = 120000;  // per reply; RFC 5321 suggests minutes
  int64_t idle_timeout_ms = 5000;       // reuse window for a finished connection
  int64_t plan_ttl_ms = 60000;          // how long a destination's addresses are reused
  // An address that refused or dropped a connection, or answered the
  // greeting with an error, is not tried again for this long (doubling per
  // failure up to the maximum): Postfix's dead-host cache.
  int64_t host_backoff_ms = 30000;
  int64_t max_host_backoff_ms = 600000;
};

// What the transport reports, for logs and metrics.
class OutboundObserver {
 public:
  virtual ~OutboundObserver() = default;
  // One SMTP session ended (or was given up) at `label` ("mx[ip]:port").
  // tls: "plaintext", "tls_verified", "tls_pinned", "tls_unverified", or a
  // failure result type.
  virtual void SessionDone(const std::string& label, const std::string& tls,
                           const std::string& detail) {}
  // A testing policy would have refused this session.
  virtual void TestingWouldFail(const std::string& domain, const std::string& label,
                                const std::string& result_type, const std::string& detail) {}
  virtual void PlaintextFallback(const std::string& domain, const std::string& label) {}
  // One message went through a session: the trace line of the hop. tls:
  // "plaintext", "tls_verified", "tls_pinned" or "tls_unverified".
  virtual void MessageSent(const queue::DeliveryJob& job, const std::string& label,
                           const std::string& tls, const std::string& tls_version,
                           const std::string& cipher, const std::string& verification,
                           const std::string& reply) {}
  virtual void ConnectionsChanged(size_t open) {}
};

// What the addresses tried so far for one job said: the failure to report
// when none takes the message.
struct AddressFailures {
  bool tls = false;  // some address failed for TLS under an enforced policy
  std::string tls_result;
  std::string diagnostic;  // the last failure
  std::string label;
};

class OutboundTransport : public queue::DeliveryTransport {
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

  // --- used by the connection and DNS plumbing in the .cc ---
  class Connection;
  struct DestinationState;
  class DnsDriver;

 private:
  friend class Connection;
  struct Job {
    queue::DeliveryJob job;
    Done done;
  };

  DestinationState& Dest(const std::string& domain);
  void Pump(DestinationState& d);
  void Resolve(DestinationState& d);
  void ResolveAddresses(const std::string& domain, std::vector<NextHop> hops);
  void PlanDone(const std::string& domain, DestinationPlan plan);
  void FailAll(DestinationState& d, const queue::AttemptResult& result);
  void StartConnection(DestinationState* d, std::vector<Destination> addresses, size_t index,
                       bool plaintext_only, AddressFailures failures, Job job);
  // A job is done: its results go to the queue manager at the next tick.
  void JobFinished(Job job, std::vector<queue::AttemptResult> results);
  // The next waiting job of `d`, for a connection that is free.
  std::optional<Job> NextJob(DestinationState* d);
  void ConnectionClosed(Connection* c);
  absl::StatusOr<TlsClientContext*> ClientContext(const DestinationPolicy& policy);
  // Dead-host cache, keyed by "ip:port".
  int64_t HostDownUntil(const std::string& key) const;
  void HostFailed(const std::string& key);
  void HostUp(const std::string& key);
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

  std::map<std::string, std::unique_ptr<DestinationState>> destinations_;
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> finished_;  // closed, waiting for their ops to drain
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

#endif  // POSTERN_ENGINE_OUTBOUND_TRANSPORT_H_
