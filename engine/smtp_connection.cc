#include "engine/smtp_connection.h"

#include <sys/socket.h>

#include <cerrno>

#include "absl/time/clock.h"
#include "common/log.h"
#include "engine/proxy_header.h"
#include "engine/worker.h"

namespace postern::engine {

SmtpConnection::SmtpConnection(Worker* worker, IoRing* ring, int fd, ConnectionSetup setup,
                               int64_t now_ms)
    : worker_(worker),
      ring_(ring),
      fd_(fd),
      setup_(std::move(setup)),
      client_ip_(setup_.socket_ip),
      client_port_(setup_.socket_port),
      phase_(setup_.proxy_protocol ? Phase::kProxyHeader : Phase::kSmtp),
      last_activity_ms_(now_ms),
      last_progress_ms_(now_ms) {}

SmtpConnection::~SmtpConnection() = default;

void SmtpConnection::Start() {
  ring_->Recv(fd_, &recv_op_);
  recv_armed_ = true;
  ++inflight_;
  // Behind a load balancer the greeting waits for the PROXY header: the
  // client's real address decides admission.
  if (phase_ == Phase::kSmtp) BeginSession();
}

void SmtpConnection::BeginSession() {
  if (!worker_->Admit(this)) {
    Refuse("421 4.7.0 Too many connections\r\n");
    return;
  }
  admitted_ = true;
  session_ = std::make_unique<SmtpSession>(
      worker_->MakeSessionContext(setup_.listener_index, client_ip_, client_port_));
  if (setup_.implicit_tls) {
    // RFC 8314: the handshake comes first; the greeting follows inside TLS.
    StartTls();
    return;
  }
  int64_t delay = worker_->GreetDelayMs();
  if (delay > 0) {
    greet_at_ms_ = worker_->NowMs() + delay;
    return;
  }
  session_->Start(&out_pending_);
  Flush();
}

void SmtpConnection::MaybeGreet(int64_t now_ms) {
  if (greet_at_ms_ < 0 || now_ms < greet_at_ms_ || closing_ || !session_) return;
  greet_at_ms_ = -1;
  last_progress_ms_ = now_ms;
  session_->Start(&out_pending_);
  Flush();
}

void SmtpConnection::StartTls() {
  TlsServerContext* ctx = worker_->tls_context();
  if (ctx == nullptr) {
    // No certificate could be loaded: nothing safe to offer.
    log::LogEvent("tls_unavailable", log::Level::kError)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Emit();
    Close();
    return;
  }
  tls_ = std::make_unique<TlsSession>(ctx);
  tls_state_ = Tls::kHandshake;
}

void SmtpConnection::Refuse(std::string_view reply) {
  out_pending_.append(reply);
  close_after_flush_ = true;
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
      if (!closing_ && !close_after_flush_) HandleWireBytes(ring_->BufferData(flags, res));
      ring_->ReturnBuffer(flags);
    }
    worker_->CountReceived(setup_.listener_index, static_cast<uint64_t>(res));
    last_activity_ms_ = worker_->NowMs();
  } else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
    // Peer closed or the socket failed; a message being spooled still
    // completes in the spool (the client never saw 250 and will retry).
    if (tls_state_ == Tls::kHandshake && !closing_) {
      worker_->CountTlsHandshake(setup_.listener_index, "", "", "eof");
    }
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

void SmtpConnection::HandleWireBytes(std::string_view data) {
  if (phase_ == Phase::kProxyHeader) {
    HandleProxyBytes(data);
    return;
  }
  if (!session_) return;  // refused; waiting for the reply to flush
  if (greet_at_ms_ >= 0) {
    // The client spoke before our greeting: a real MTA waits for the 220.
    greet_at_ms_ = -1;
    worker_->CountRejection("pregreet");
    log::LogEvent("pregreet", log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Add("client", client_ip_)
        .Emit();
    Refuse("421 4.7.0 Error: SMTP protocol violation (talked before the greeting)\r\n");
    return;
  }
  if (tls_state_ != Tls::kOff) {
    HandleCiphertext(data);
    return;
  }
  session_->Receive(data);
  Drive();
}

void SmtpConnection::HandleCiphertext(std::string_view data) {
  tls_->FeedCiphertext(data);
  if (tls_state_ == Tls::kHandshake) {
    TlsSession::HandshakeResult r = tls_->DoHandshake();
    if (r == TlsSession::HandshakeResult::kFailed) {
      worker_->CountTlsHandshake(setup_.listener_index, "", "", tls_->failure_reason());
      log::LogEvent("tls_handshake_failed", log::Level::kWarn)
          .Add("conn", static_cast<int64_t>(setup_.id))
          .Add("client", client_ip_)
          .Add("reason", tls_->failure_reason())
          .Emit();
      // Send the alert, then close.
      tls_->TakeCiphertext(sender_.pending());
      tls_shutdown_sent_ = true;
      close_after_flush_ = true;
      Flush();
      return;
    }
    if (r == TlsSession::HandshakeResult::kWantIO) {
      Flush();
      return;
    }
    HandshakeFinished();
  }
  // Application data, possibly already in the handshake's last flight.
  plaintext_.clear();
  absl::StatusOr<size_t> n = tls_->ReadPlaintext(&plaintext_);
  if (!plaintext_.empty()) session_->Receive(plaintext_);
  if (!n.ok()) {
    // close_notify or a fatal alert: answer what was complete, then close.
    if (!TlsSession::IsPeerClosed(n.status())) {
      log::LogEvent("tls_error", log::Level::kWarn)
          .Add("conn", static_cast<int64_t>(setup_.id))
          .Add("error", std::string(n.status().message()))
          .Emit();
    }
    close_after_flush_ = true;
  }
  Drive();
}

void SmtpConnection::HandshakeFinished() {
  tls_state_ = Tls::kOn;
  TlsFacts facts;
  facts.version = tls_->version();
  facts.cipher = tls_->cipher();
  facts.bits = tls_->cipher_bits();
  facts.alg_bits = tls_->cipher_alg_bits();
  if (auto peer = tls_->peer_certificate()) {
    facts.peer_cert_sha256 = peer->sha256_cert_hex;
    facts.peer_spki_sha256 = peer->sha256_spki_hex;
  }
  worker_->CountTlsHandshake(setup_.listener_index, facts.version, facts.cipher, "");
  log::LogEvent("tls")
      .Add("conn", static_cast<int64_t>(setup_.id))
      .Add("version", facts.version)
      .Add("cipher", facts.cipher)
      .Add("resumed", tls_->resumed() ? "yes" : "no")
      .Add("client_cert", facts.peer_cert_sha256.empty() ? "none" : facts.peer_cert_sha256)
      .Emit();
  session_->TlsStarted(facts);
  if (setup_.implicit_tls && !greeted_) {
    greeted_ = true;
    session_->Start(&out_pending_);
  }
}

void SmtpConnection::HandleProxyBytes(std::string_view data) {
  proxy_buffer_.append(data);
  ProxyParseResult r = ParseProxyHeader(proxy_buffer_);
  if (r.status == ProxyParseResult::Status::kNeedMore) return;
  if (r.status == ProxyParseResult::Status::kInvalid) {
    // No greeting was sent, so there is nobody to answer: an SMTP client
    // that reached a PROXY listener directly is simply disconnected.
    log::LogEvent("proxy_header_invalid", log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Add("peer", setup_.socket_ip)
        .Add("error", r.error)
        .Emit();
    worker_->CountRejection("proxy_header");
    Close();
    return;
  }
  if (!r.local) {
    client_ip_ = r.source_ip;
    client_port_ = r.source_port;
  }
  log::LogEvent("proxy_header")
      .Add("conn", static_cast<int64_t>(setup_.id))
      .Add("peer", setup_.socket_ip)
      .Add("client", client_ip_)
      .Emit();
  std::string rest = proxy_buffer_.substr(r.consumed);
  proxy_buffer_.clear();
  proxy_buffer_.shrink_to_fit();
  phase_ = Phase::kSmtp;
  BeginSession();
  // Bytes behind the header were sent before our greeting (or are the TLS
  // ClientHello on an implicit-TLS listener).
  if (!rest.empty() && session_ && !closing_) HandleWireBytes(rest);
}

void SmtpConnection::Drive() {
  while (!closing_ && session_) {
    SmtpSession::Event ev = session_->Process(&out_pending_);
    if (ev == SmtpSession::Event::kSpool) {
      std::string queue_id = worker_->NextQueueId();
      AcceptedMessage msg = session_->TakeMessage(queue_id, absl::Now());
      waiting_for_spool_ = true;
      worker_->Spool(this, queue_id, std::move(msg));
    } else if (ev == SmtpSession::Event::kAuthCheck) {
      waiting_for_auth_ = true;
      worker_->CheckAuth(this, session_->TakeAuthRequest());
    } else if (ev == SmtpSession::Event::kStartTls && tls_state_ == Tls::kOff) {
      // The 220 goes out in plaintext; everything after it is TLS. The
      // session already dropped whatever the client pipelined behind
      // STARTTLS.
      uint64_t discarded = session_->discarded_after_starttls();
      if (discarded > 0) worker_->CountStartTlsDiscarded(setup_.listener_index, discarded);
      sender_.pending()->append(out_pending_);
      out_pending_.clear();
      StartTls();
    } else if (ev == SmtpSession::Event::kClose) {
      close_after_flush_ = true;
    }
    break;
  }
  CountRejections();
  Flush();
}

void SmtpConnection::SpoolDone(const absl::Status& status, const std::string& queue_id) {
  waiting_for_spool_ = false;
  if (closing_ || !session_) return;
  session_->SpoolDone(status, queue_id, &out_pending_);
  last_activity_ms_ = worker_->NowMs();
  Drive();
}

void SmtpConnection::AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains) {
  waiting_for_auth_ = false;
  if (closing_ || !session_) return;
  session_->AuthDone(outcome, std::move(user_domains), &out_pending_);
  last_activity_ms_ = worker_->NowMs();
  Drive();
}

void SmtpConnection::Timeout() {
  if (closing_) return;
  if (session_ && tls_state_ != Tls::kHandshake) {
    session_->Timeout(&out_pending_);
    close_after_flush_ = true;
    Flush();
  } else {
    // No PROXY header, or no handshake, in time: no channel to answer on.
    if (tls_state_ == Tls::kHandshake) {
      worker_->CountTlsHandshake(setup_.listener_index, "", "", "timeout");
    }
    Close();
  }
}

void SmtpConnection::Shutdown() {
  if (closing_) return;
  if (session_ && tls_state_ != Tls::kHandshake) {
    session_->Shutdown(&out_pending_);
    close_after_flush_ = true;
    Flush();
  } else {
    Close();
  }
}

void SmtpConnection::CountRejections() {
  if (!session_) return;
  for (const std::string& reason : session_->TakeRejections()) worker_->CountRejection(reason);
  worker_->CountCommands(session_->TakeCommandCounts());
  // Progress for the timeouts: a complete command, or the start of content.
  int64_t now = worker_->NowMs();
  if (session_->commands() != commands_seen_) {
    commands_seen_ = session_->commands();
    last_progress_ms_ = now;
  }
  SmtpSession::Phase phase = session_->phase();
  if (phase == SmtpSession::Phase::kData && !in_data_) data_started_ms_ = now;
  in_data_ = phase == SmtpSession::Phase::kData;
}

void SmtpConnection::Flush() {
  if (closing_) return;
  // Replies become wire bytes: through TLS once it is up, as they are
  // without it. During a handshake they wait (nothing is produced then).
  if (!out_pending_.empty()) {
    if (tls_state_ == Tls::kOn) {
      absl::Status st = tls_->WritePlaintext(out_pending_);
      out_pending_.clear();
      if (!st.ok()) close_after_flush_ = true;
    } else if (tls_state_ == Tls::kOff) {
      sender_.pending()->append(out_pending_);
      out_pending_.clear();
    }
  }
  if (tls_state_ == Tls::kOn && close_after_flush_ && !tls_shutdown_sent_) {
    tls_shutdown_sent_ = true;
    tls_->Shutdown();
  }
  if (tls_) tls_->TakeCiphertext(sender_.pending());
  if (sender_.Send(fd_)) {
    ++inflight_;
    return;
  }
  if (sender_.idle() && close_after_flush_) Close();
}

void SmtpConnection::OnSent(int res) {
  --inflight_;
  // A short send's rest goes first, ahead of anything queued since.
  if (sender_.OnSent(fd_, res, /*resend=*/!closing_)) {
    ++inflight_;
    return;
  }
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (res < 0) {
    Close();
    MaybeFinish();
    return;
  }
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
