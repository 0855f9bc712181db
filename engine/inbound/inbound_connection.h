// InboundConnection: one accepted SMTP socket. Its Stream moves the bytes
// (and runs TLS); this class adds what is inbound-specific: the optional
// PROXY header, admission, the greeting (and its delay), STARTTLS, and the
// hand-over of finished messages and AUTH credentials to its host.
//
// PROXY listeners: a TCP peer outside the listener's proxy_protocol_from is
// answered "421 4.7.1" and closed at Start(), before anything it sent is
// read (counted in postern_proxy_refused_total, logged as proxy_refused).
//
// End of input: a client that shuts down its sending half after pipelining
// its last commands still gets every reply: the session processes what was
// received, waits for a spool or AUTH answer it is owed, and the connection
// closes after the replies are sent.
//
// Lifetime: owned by its host (InboundServer). Close starts with the stream;
// the host frees the connection once Finished(), so no completion reaches
// freed memory. Holds the InboundPolicySet it started with for its whole
// life. Threading: the loop thread only.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_CONNECTION_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/inbound/inbound_host.h"
#include "engine/inbound/inbound_policy_set.h"
#include "engine/inbound/inbound_probe.h"
#include "engine/inbound/smtp_server_session.h"
#include "engine/net/io_ring.h"
#include "engine/net/stream.h"

namespace postern::engine {

// What the connection knows about its listener and peer when accepted.
struct ConnectionSetup {
  uint64_t id = 0;
  size_t listener_index = 0;
  std::string socket_ip;  // the TCP peer (the load balancer when proxied)
  uint16_t socket_port = 0;
};

class InboundConnection : private StreamHandler {
 public:
  InboundConnection(InboundHost* host, InboundProbe* probe, IoRing* ring, int fd,
                    ConnectionSetup setup, std::shared_ptr<const InboundPolicySet> policy,
                    int64_t now_ms);
  ~InboundConnection() override;
  InboundConnection(const InboundConnection&) = delete;
  InboundConnection& operator=(const InboundConnection&) = delete;

  void Start();
  // Sends the greeting if a greet delay has passed (called by the tick).
  void MaybeGreet(int64_t now_ms);
  // The spool's answer for the message this connection handed over.
  void SpoolDone(const absl::Status& status, const std::string& queue_id);
  // The verifier's answer to the AUTH this connection handed over.
  void AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains);
  // Idle too long: 421 4.4.2 and close.
  void Timeout();
  // Node is stopping: 421 4.3.2 and close.
  void Shutdown();

  uint64_t id() const { return setup_.id; }
  size_t listener_index() const { return setup_.listener_index; }
  // The client: from the PROXY header when the listener expects one.
  const std::string& client_ip() const { return client_ip_; }
  // False until the client's address is known (PROXY header read).
  bool admitted() const { return admitted_; }
  int64_t last_activity_ms() const { return last_activity_ms_; }
  // When the last complete command was read (or the connection opened).
  int64_t last_progress_ms() const { return last_progress_ms_; }
  // While message content is being read: when it started; else -1.
  int64_t data_started_ms() const { return in_data_ ? data_started_ms_ : -1; }
  bool waiting_for_spool() const { return waiting_for_spool_; }
  bool waiting_for_auth() const { return waiting_for_auth_; }
  bool closing() const { return stream_.closing(); }
  // True once closed and no ring operation is in flight: safe to delete.
  bool Finished() const { return stream_.Finished(); }

 private:
  // StreamHandler
  void OnStreamData(std::string_view data) override;
  void OnStreamEnd(StreamEnd how, std::string_view detail) override;
  void OnTlsEstablished() override;
  void OnTlsFailed(std::string_view reason) override;
  void OnWireBytes(size_t n) override;
  void OnStreamClosing() override;

  void HandleProxyBytes(std::string_view data);
  // The client is known: admission check, then the SMTP session starts.
  void BeginSession(std::string_view early);
  void StartTls(std::string_view early);
  void Drive();
  void Refuse(std::string_view reply);
  void CountSessionEvents();

  InboundHost* host_;
  InboundProbe* probe_;
  ConnectionSetup setup_;
  std::shared_ptr<const InboundPolicySet> policy_;
  const ListenerSettings& listener_;
  Stream stream_;
  std::string client_ip_;
  uint16_t client_port_ = 0;
  bool reading_proxy_header_;
  std::string proxy_buffer_;
  bool admitted_ = false;
  std::unique_ptr<SmtpServerSession> session_;
  bool waiting_for_spool_ = false;
  bool waiting_for_auth_ = false;
  bool greeted_ = false;
  int64_t greet_at_ms_ = -1;  // >= 0: greeting held until then
  int64_t last_activity_ms_;
  int64_t last_progress_ms_;
  uint64_t commands_seen_ = 0;
  bool in_data_ = false;
  int64_t data_started_ms_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_CONNECTION_H_
