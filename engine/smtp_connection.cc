#include "engine/smtp_connection.h"

#include <sys/socket.h>

#include <cerrno>

#include "absl/time/clock.h"
#include "engine/worker.h"

namespace postern::engine {

SmtpConnection::SmtpConnection(Worker* worker, IoRing* ring, int fd, uint64_t id,
                               size_t listener_index, SessionContext context, int64_t now_ms)
    : worker_(worker),
      ring_(ring),
      fd_(fd),
      id_(id),
      listener_index_(listener_index),
      client_ip_(context.client_ip),
      session_(std::move(context)),
      last_activity_ms_(now_ms) {}

SmtpConnection::~SmtpConnection() = default;

void SmtpConnection::Start() {
  session_.Start(&out_pending_);
  ring_->Recv(fd_, &recv_op_);
  recv_armed_ = true;
  ++inflight_;
  Flush();
}

void SmtpConnection::OnRecv(int res, uint32_t flags) {
  bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    recv_armed_ = false;
    --inflight_;
  }
  if (res > 0) {
    if (flags & IORING_CQE_F_BUFFER) {
      std::string_view data = ring_->BufferData(flags, res);
      if (!closing_) session_.Receive(data);
      ring_->ReturnBuffer(flags);
    }
    worker_->CountReceived(listener_index_, static_cast<uint64_t>(res));
    last_activity_ms_ = worker_->NowMs();
    if (!closing_) Drive();
  } else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
    // Peer closed or the socket failed; a message being spooled still
    // completes in the spool (the client never saw 250 and will retry).
    if (!closing_) Close();
  }
  // A multishot recv ends after ENOBUFS or when the kernel decides; re-arm.
  if (!recv_armed_ && !closing_) {
    ring_->Recv(fd_, &recv_op_);
    recv_armed_ = true;
    ++inflight_;
  }
  MaybeFinish();
}

void SmtpConnection::Drive() {
  while (!closing_) {
    SmtpSession::Event ev = session_.Process(&out_pending_);
    if (ev == SmtpSession::Event::kSpool) {
      std::string queue_id = worker_->NextQueueId();
      AcceptedMessage msg = session_.TakeMessage(queue_id, absl::Now());
      waiting_for_spool_ = true;
      worker_->Spool(this, queue_id, std::move(msg));
      break;
    }
    if (ev == SmtpSession::Event::kClose) close_after_flush_ = true;
    break;
  }
  CountRejections();
  Flush();
}

void SmtpConnection::SpoolDone(const absl::Status& status, const std::string& queue_id) {
  waiting_for_spool_ = false;
  if (closing_) return;
  session_.SpoolDone(status, queue_id, &out_pending_);
  last_activity_ms_ = worker_->NowMs();
  Drive();
}

void SmtpConnection::Timeout() {
  if (closing_) return;
  session_.Timeout(&out_pending_);
  close_after_flush_ = true;
  Flush();
}

void SmtpConnection::Shutdown() {
  if (closing_) return;
  session_.Shutdown(&out_pending_);
  close_after_flush_ = true;
  Flush();
}

void SmtpConnection::CountRejections() {
  for (const std::string& reason : session_.TakeRejections()) worker_->CountRejection(reason);
}

void SmtpConnection::Flush() {
  if (send_armed_ || closing_) return;
  if (out_pending_.empty()) {
    if (close_after_flush_) Close();
    return;
  }
  out_inflight_.swap(out_pending_);
  out_pending_.clear();
  inflight_sent_ = 0;
  send_armed_ = true;
  ++inflight_;
  ring_->Send(fd_, out_inflight_.data(), out_inflight_.size(), &send_op_);
}

void SmtpConnection::OnSent(int res) {
  send_armed_ = false;
  --inflight_;
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (res < 0) {
    Close();
    MaybeFinish();
    return;
  }
  inflight_sent_ += static_cast<size_t>(res);
  if (inflight_sent_ < out_inflight_.size()) {
    // Short send: the rest goes first, ahead of anything queued since.
    send_armed_ = true;
    ++inflight_;
    ring_->Send(fd_, out_inflight_.data() + inflight_sent_, out_inflight_.size() - inflight_sent_,
                &send_op_);
    return;
  }
  out_inflight_.clear();
  Flush();
  MaybeFinish();
}

void SmtpConnection::Close() {
  if (closing_) return;
  closing_ = true;
  // Stop reading; the fd is closed once nothing refers to it any more.
  if (recv_armed_) ring_->Cancel(&recv_op_);
  shutdown(fd_, SHUT_RDWR);
  worker_->ConnectionClosing(this);
  MaybeFinish();
}

void SmtpConnection::MaybeFinish() {
  if (!closing_ || inflight_ != 0 || fd_closed_) return;
  ring_->Close(fd_);
  fd_closed_ = true;
}

}  // namespace postern::engine
