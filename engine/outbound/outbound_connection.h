// OutboundConnection: one outbound socket to one address, and the SMTP
// client session on it. Its Stream moves the bytes and runs TLS; this class
// decides what the destination's TLS policy makes of each step (STARTTLS
// offered or not, handshake, verification, pins), turns replies into
// per-recipient results, and takes the next waiting job when it can.
//
// The connection talks to its owner only through OutboundConnectionHost,
// so a unit test can run one against a real server socket with a fake host.
//
// Every job a connection takes is finished exactly once: by a result, by
// handing it to a new connection (the next address, or the same one in
// plaintext), or, when the connection closes holding a job it has not
// started, by handing it back to its destination's queue.
//
// Lifetime: owned by the host; freed by it once Finished(). Threading: the
// loop thread.
#ifndef POSTERN_ENGINE_OUTBOUND_OUTBOUND_CONNECTION_H_
#define POSTERN_ENGINE_OUTBOUND_OUTBOUND_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/net/io_ring.h"
#include "engine/net/socket_address.h"
#include "engine/net/stream.h"
#include "engine/outbound/next_hop.h"
#include "engine/outbound/outbound_policy.h"
#include "engine/outbound/outbound_tls_check.h"
#include "engine/outbound/smtp_client_session.h"
#include "engine/tls/tls_client_context.h"
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

// One destination domain of one message, and where its results go.
struct OutboundJob {
  queue::DeliveryJob job;
  queue::DeliveryTransport::Done done;
};

// The host's per-domain queue; opaque to the connection.
struct DestinationQueue;
class OutboundConnection;

class OutboundConnectionHost {
 public:
  virtual ~OutboundConnectionHost() = default;
  virtual IoRing* ring() = 0;
  virtual int64_t NowMs() const = 0;
  virtual const OutboundOptions& options() const = 0;
  virtual OutboundObserver* observer() = 0;
  virtual absl::StatusOr<TlsClientContext*> ClientContext(const DomainTlsPolicy& policy) = 0;
  // Dead-host cache, keyed by "ip:port".
  virtual int64_t HostDownUntil(const std::string& key) const = 0;
  virtual void HostFailed(const std::string& key) = 0;
  virtual void HostUp(const std::string& key) = 0;
  // A job is done; its results reach the queue manager after the current
  // completion (the DeliveryTransport contract).
  virtual void JobFinished(OutboundJob job, std::vector<queue::AttemptResult> results) = 0;
  // The next waiting job of `d`, for a connection that is free.
  virtual std::optional<OutboundJob> NextJob(DestinationQueue* d) = 0;
  // A job a closing connection took but never finished: first in line again.
  virtual void Requeue(DestinationQueue* d, OutboundJob job) = 0;
  // Hands `job` to a new connection to addresses[index].
  virtual void StartConnection(DestinationQueue* d, std::vector<HostAddress> addresses,
                               size_t index, bool plaintext_only, AddressFailures failures,
                               OutboundJob job) = 0;
  // The connection waits for a job of its destination (idle) or stopped
  // waiting.
  virtual void SetIdle(OutboundConnection* c, bool idle) = 0;
  // The connection started closing; the host frees it once Finished().
  virtual void ConnectionClosing(OutboundConnection* c) = 0;
  // After every ring completion of a connection: results are handed on and
  // destinations whose connection closed are pumped.
  virtual void AfterCompletion() = 0;
};

class OutboundConnection : private StreamHandler {
 public:
  OutboundConnection(OutboundConnectionHost* host, DestinationQueue* d, std::string domain,
                     DomainTlsPolicy policy, std::vector<HostAddress> addresses, size_t index,
                     bool plaintext_only, AddressFailures failures);
  ~OutboundConnection() override;
  OutboundConnection(const OutboundConnection&) = delete;
  OutboundConnection& operator=(const OutboundConnection&) = delete;

  // Connects to addresses[index] for `job` (none: just a session).
  void Start(std::optional<OutboundJob> job);
  // A waiting job for an idle connection.
  void Assign(OutboundJob job);
  // Connect and reply timeouts, the idle timeout.
  void Tick(int64_t now_ms);
  // QUIT if idle, else close.
  void Quit();
  void Close();

  bool idle() const { return idle_; }
  bool Finished() const { return stream_.Finished(); }
  DestinationQueue* destination() const { return d_; }
  const std::string& domain() const { return domain_; }

 private:
  // StreamHandler
  void OnConnected(int res) override;
  void OnStreamData(std::string_view data) override;
  void OnStreamEnd(StreamEnd how, std::string_view detail) override;
  void OnTlsEstablished() override;
  void OnTlsFailed(std::string_view reason) override;
  void OnSendFailed(int err) override;
  void OnWireBytes(size_t n) override;
  void OnStreamClosing() override;
  void OnCompletionDone() override;

  void StartTls();
  // Returns false when the session was abandoned (policy not met).
  bool HandshakeDone();
  OutboundTlsVerdict Evaluate(const OutboundTlsFacts& facts);
  void HandshakeFailed(const std::string& reason);
  void Drive();
  void FinishWith(const std::optional<MessageResult>& result);
  void Finish(std::vector<queue::AttemptResult> results, bool reusable = true);
  void BecomeIdle();
  // This address did not take the message: the next one does, or the job
  // fails with what the addresses said. host_down: the address itself failed
  // (not our policy): remember it.
  void AddressFailed(bool tls, const std::string& tls_result, const std::string& diagnostic,
                     bool host_down = false);
  // Hands the job to a new connection at `index` and closes this one.
  void Retry(size_t index, bool plaintext_only);

  OutboundConnectionHost* host_;
  DestinationQueue* d_;
  std::string domain_;
  DomainTlsPolicy policy_;
  std::vector<HostAddress> addresses_;
  size_t index_;
  bool plaintext_only_;
  AddressFailures failures_;
  Stream stream_;
  std::string label_;
  std::string host_key_;  // "ip:port", the dead-host cache key
  bool host_up_reported_ = false;
  std::unique_ptr<SmtpClientSession> session_;
  std::string tls_label_, tls_version_, cipher_, verification_;
  std::optional<OutboundJob> job_;
  OutboundMessage message_;
  bool message_started_ = false;
  bool idle_ = false;
  bool quitting_ = false;
  int64_t idle_since_ms_ = 0;
  int64_t deadline_ms_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_OUTBOUND_CONNECTION_H_
