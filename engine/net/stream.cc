#include "engine/net/stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tls/tls_session.h"

namespace postern::engine {

void Stream::Op::OnComplete(int res, uint32_t flags) {
  switch (k_) {
    case kConnect:
      s_->OnConnect(res);
      break;
    case kRecv:
      s_->OnRecv(res, flags);
      break;
    case kSend:
      s_->OnSent(res);
      break;
  }
  // Last: the handler's owner may free the stream here.
  s_->handler_->OnCompletionDone();
}

Stream::Stream(IoRing* ring, StreamHandler* handler, int fd)
    : ring_(ring), handler_(handler), fd_(fd), connected_(fd >= 0) {}

Stream::~Stream() = default;

absl::Status Stream::Connect(const SocketAddress& addr) {
  addr_ = addr;
  fd_ = socket(addr_.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  connecting_ = true;
  ++inflight_;
  ring_->Connect(fd_, reinterpret_cast<const sockaddr*>(&addr_.storage), addr_.length,
                 &connect_op_);
  return absl::OkStatus();
}

void Stream::OnConnect(int res) {
  --inflight_;
  connecting_ = false;
  if (closing_) return MaybeFinish();
  if (res == 0) {
    connected_ = true;
    ArmRecv();
  }
  handler_->OnConnected(res);
  MaybeFinish();
}

void Stream::StartReading() { ArmRecv(); }

void Stream::ArmRecv() {
  if (recv_armed_ || closing_ || input_ended_ || fd_ < 0) return;
  recv_armed_ = true;
  ++inflight_;
  ring_->Recv(fd_, &recv_op_);
}

void Stream::OnRecv(int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) {
    recv_armed_ = false;
    --inflight_;
  }
  if (res > 0) {
    if (flags & IORING_CQE_F_BUFFER) {
      const std::string_view data = ring_->BufferData(flags, res);
      handler_->OnWireBytes(data.size());
      // Input after a decision to close is not read any more.
      if (!closing_ && !close_after_flush_ && !input_ended_) {
        if (tls_) {
          HandleCiphertext(data);
        } else {
          handler_->OnStreamData(data);
        }
      }
      ring_->ReturnBuffer(flags);
    }
  } else if (res != -ENOBUFS && res != -ECANCELED) {
    // EOF (0) or a socket error: no more input.
    if (!closing_ && !input_ended_) {
      if (tls_ && !tls_on_) {
        input_ended_ = true;
        handler_->OnTlsFailed(kTlsEofReason);
        if (!closing_) CloseAfterFlush();
      } else if (res == 0) {
        EndInput(StreamEnd::kEof, "");
      } else {
        EndInput(StreamEnd::kError, std::strerror(-res));
      }
    }
    input_ended_ = true;
  }
  // A multishot receive ends after ENOBUFS or when the kernel decides: re-arm.
  ArmRecv();
  MaybeFinish();
}

void Stream::EndInput(StreamEnd how, std::string_view detail) {
  input_ended_ = true;
  handler_->OnStreamEnd(how, detail);
}

void Stream::StartTlsServer(TlsServerContext* ctx, std::string_view early) {
  tls_ = std::make_unique<TlsSession>(ctx);
  tls_on_ = false;
  if (!early.empty()) HandleCiphertext(early);
}

void Stream::StartTlsClient(TlsClientContext* ctx, std::string_view host) {
  tls_ = std::make_unique<TlsSession>(ctx, host);
  tls_on_ = false;
  if (tls_->DoHandshake() == TlsSession::HandshakeResult::kFailed) {  // the ClientHello
    input_ended_ = true;
    handler_->OnTlsFailed(tls_->failure_reason());
    if (!closing_) CloseAfterFlush();
    return;
  }
  Flush();
}

void Stream::HandleCiphertext(std::string_view data) {
  tls_->FeedCiphertext(data);
  if (!tls_on_) {
    const TlsSession::HandshakeResult r = tls_->DoHandshake();
    if (r == TlsSession::HandshakeResult::kWantIO) {
      Flush();
      return;
    }
    if (r == TlsSession::HandshakeResult::kFailed) {
      // The alert goes out, then the socket closes; nothing more is read,
      // so the failure is reported once.
      tls_shutdown_sent_ = true;
      input_ended_ = true;
      handler_->OnTlsFailed(tls_->failure_reason());
      if (!closing_) CloseAfterFlush();
      return;
    }
    tls_on_ = true;
    handler_->OnTlsEstablished();
    if (closing_ || close_after_flush_) return;
  }
  // Application data, possibly already in the handshake's last flight.
  ReadPlaintext();
  Flush();
}

void Stream::ReadPlaintext() {
  plaintext_.clear();
  const absl::StatusOr<size_t> n = tls_->ReadPlaintext(&plaintext_);
  if (!plaintext_.empty()) handler_->OnStreamData(plaintext_);
  if (!n.ok() && !closing_ && !input_ended_) {
    if (TlsSession::IsPeerClosed(n.status())) {
      EndInput(StreamEnd::kTlsClosed, "");
    } else {
      EndInput(StreamEnd::kError, std::string(n.status().message()));
    }
  }
}

void Stream::Flush() {
  if (closing_ || fd_ < 0) return;
  if (!out_.empty()) {
    if (tls_on_) {
      if (!tls_->WritePlaintext(out_).ok()) close_after_flush_ = true;
      out_.clear();
    } else if (!tls_) {
      sender_.pending()->append(out_);
      out_.clear();
    }
    // During a handshake replies wait: nothing may go out in plaintext.
  }
  if (tls_on_ && close_after_flush_ && !tls_shutdown_sent_) {
    tls_shutdown_sent_ = true;
    tls_->Shutdown();
  }
  if (tls_) tls_->TakeCiphertext(sender_.pending());
  if (!connected_) return;
  if (sender_.Send(fd_)) {
    ++inflight_;
    return;
  }
  if (sender_.idle() && close_after_flush_) Close();
}

void Stream::CloseAfterFlush() {
  if (closing_) return;
  close_after_flush_ = true;
  Flush();
}

void Stream::OnSent(int res) {
  --inflight_;
  // A short send's rest goes first, ahead of anything queued since.
  if (sender_.OnSent(fd_, res, /*resend=*/!closing_)) {
    ++inflight_;
    return;
  }
  if (!closing_) {
    if (res < 0) {
      // The handler learns first, while the stream is still open, so it can
      // settle what the connection owed; then the stream closes.
      handler_->OnSendFailed(res);
      Close();
    } else {
      Flush();
    }
  }
  MaybeFinish();
}

void Stream::Close() {
  if (closing_) return;
  closing_ = true;
  if (recv_armed_) ring_->Cancel(&recv_op_);
  if (connecting_) ring_->Cancel(&connect_op_);
  // Fails a send stuck on a peer that does not read; the fd itself is closed
  // once nothing refers to it any more.
  if (fd_ >= 0 && connected_) shutdown(fd_, SHUT_RDWR);
  handler_->OnStreamClosing();
  MaybeFinish();
}

void Stream::MaybeFinish() {
  if (!closing_ || inflight_ != 0 || fd_closed_) return;
  if (fd_ >= 0) ring_->Close(fd_);
  fd_closed_ = true;
}

}  // namespace postern::engine
