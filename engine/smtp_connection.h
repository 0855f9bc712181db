// SmtpConnection: one accepted SMTP socket on the worker's ring. It moves
// bytes between the socket and its SmtpSession through the optional layers
// of its listener (PROXY protocol header, TLS), and hands completed messages
// to the worker for spooling.
//
// Lifetime: owned by the Worker (connection table). Close() starts shutdown;
// the worker deletes the connection once no ring operation of it is in flight
// (Finished()), so no completion ever reaches a freed object.
// Threading: the worker's loop thread only.
#ifndef POSTERN_ENGINE_SMTP_CONNECTION_H_
#define POSTERN_ENGINE_SMTP_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "engine/io_ring.h"
#include "engine/ring_sender.h"
#include "engine/smtp_session.h"
#include "engine/tls_session.h"

namespace postern::engine {

class Worker;

// What the connection knows about its listener and peer when accepted.
struct ConnectionSetup {
  uint64_t id = 0;
  size_t listener_index = 0;
  std::string listener_name;
  bool proxy_protocol = false;  // expect a PROXY v1/v2 header first
  bool implicit_tls = false;    // TLS from the first byte (port 465)
  std::string socket_ip;        // the TCP peer (the load balancer when proxied)
  uint16_t socket_port = 0;
};

class SmtpConnection {
 public:
  SmtpConnection(Worker* worker, IoRing* ring, int fd, ConnectionSetup setup, int64_t now_ms);
  ~SmtpConnection();
  SmtpConnection(const SmtpConnection&) = delete;
  SmtpConnection& operator=(const SmtpConnection&) = delete;

  void Start();
  // Sends the greeting if a greet delay has passed (called by the tick).
  void MaybeGreet(int64_t now_ms);
  // The spool's answer for the message this connection handed over.
  void SpoolDone(const absl::Status& status, const std::string& queue_id);
  // Idle too long: 421 4.4.2 and close.
  void Timeout();
  // Node is stopping: 421 4.3.2 and close.
  void Shutdown();
  // The verifier's answer to the AUTH this connection handed over.
  void AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains);

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
  bool closing() const { return closing_; }
  // True once closed and no ring operation is in flight: safe to delete.
  bool Finished() const { return closing_ && inflight_ == 0 && fd_closed_; }

 private:
  class RecvOp : public IoOp {
   public:
    explicit RecvOp(SmtpConnection* c) : c_(c) {}
    void OnComplete(int res, uint32_t flags) override { c_->OnRecv(res, flags); }

   private:
    SmtpConnection* c_;
  };
  class SendOp : public IoOp {
   public:
    explicit SendOp(SmtpConnection* c) : c_(c) {}
    void OnComplete(int res, uint32_t flags) override { c_->OnSent(res); }

   private:
    SmtpConnection* c_;
  };

  enum class Phase { kProxyHeader, kSmtp };
  enum class Tls { kOff, kHandshake, kOn };

  void OnRecv(int res, uint32_t flags);
  void OnSent(int res);
  void HandleWireBytes(std::string_view data);
  void HandleProxyBytes(std::string_view data);
  // The client is known: admission check, then the SMTP session starts.
  void BeginSession();
  void StartTls();
  void HandleCiphertext(std::string_view data);
  void HandshakeFinished();
  void Drive();
  void Flush();
  void Refuse(std::string_view reply);
  void Close();
  void MaybeFinish();
  void CountRejections();

  Worker* worker_;
  IoRing* ring_;
  int fd_;
  ConnectionSetup setup_;
  std::string client_ip_;
  uint16_t client_port_ = 0;
  Phase phase_;
  std::string proxy_buffer_;
  bool admitted_ = false;
  std::unique_ptr<SmtpSession> session_;
  Tls tls_state_ = Tls::kOff;
  std::unique_ptr<TlsSession> tls_;
  std::string plaintext_;  // decrypted input, reused buffer
  RecvOp recv_op_{this};
  SendOp send_op_{this};
  RingSender sender_{ring_, &send_op_};  // the wire bytes, in order
  std::string out_pending_;              // replies (plaintext) not yet through TLS
  int inflight_ = 0;                     // ring operations that will still complete
  bool recv_armed_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool fd_closed_ = false;
  bool waiting_for_spool_ = false;
  bool waiting_for_auth_ = false;
  bool tls_shutdown_sent_ = false;
  bool greeted_ = false;
  int64_t greet_at_ms_ = -1;  // >= 0: greeting held until then
  int64_t last_activity_ms_;
  int64_t last_progress_ms_;
  uint64_t commands_seen_ = 0;
  bool in_data_ = false;
  int64_t data_started_ms_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_CONNECTION_H_
