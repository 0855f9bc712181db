// SmtpConnection: one accepted SMTP socket on the worker's ring. It moves
// bytes between the socket and its SmtpSession, and hands completed messages
// to the worker for spooling.
//
// Lifetime: owned by the Worker (connection table). Close() starts shutdown;
// the worker deletes the connection once no ring operation of it is in flight
// (Finished()), so no completion ever reaches a freed object.
// Threading: the worker's loop thread only.
#ifndef POSTERN_ENGINE_SMTP_CONNECTION_H_
#define POSTERN_ENGINE_SMTP_CONNECTION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/io_ring.h"
#include "engine/smtp_session.h"

namespace postern::engine {

class Worker;

class SmtpConnection {
 public:
  SmtpConnection(Worker* worker, IoRing* ring, int fd, uint64_t id, size_t listener_index,
                 SessionContext context, int64_t now_ms);
  ~SmtpConnection();
  SmtpConnection(const SmtpConnection&) = delete;
  SmtpConnection& operator=(const SmtpConnection&) = delete;

  void Start();
  // The spool's answer for the message this connection handed over.
  void SpoolDone(const absl::Status& status, const std::string& queue_id);
  // Idle too long: 421 4.4.2 and close.
  void Timeout();
  // Node is stopping: 421 4.3.2 and close.
  void Shutdown();

  uint64_t id() const { return id_; }
  size_t listener_index() const { return listener_index_; }
  const std::string& client_ip() const { return client_ip_; }
  int64_t last_activity_ms() const { return last_activity_ms_; }
  bool waiting_for_spool() const { return waiting_for_spool_; }
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

  void OnRecv(int res, uint32_t flags);
  void OnSent(int res);
  void Drive();
  void Flush();
  void Close();
  void MaybeFinish();
  void CountRejections();

  Worker* worker_;
  IoRing* ring_;
  int fd_;
  uint64_t id_;
  size_t listener_index_;
  std::string client_ip_;
  SmtpSession session_;
  RecvOp recv_op_{this};
  SendOp send_op_{this};
  std::string out_pending_;   // replies not yet handed to the kernel
  std::string out_inflight_;  // the buffer of the send in flight
  size_t inflight_sent_ = 0;
  int inflight_ = 0;          // ring operations that will still complete
  bool recv_armed_ = false;
  bool send_armed_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool fd_closed_ = false;
  bool waiting_for_spool_ = false;
  int64_t last_activity_ms_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_CONNECTION_H_
