#include "engine/inbound/inbound_connection.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/log.h"
#include "engine/net/proxy_header.h"
#include "engine/tls/tls_session.h"

namespace postern::engine {

InboundConnection::InboundConnection(InboundHost* host, InboundProbe* probe, IoRing* ring, int fd,
                                     ConnectionSetup setup,
                                     std::shared_ptr<const InboundPolicySet> policy, int64_t now_ms)
    : host_(host),
      probe_(probe),
      setup_(std::move(setup)),
      policy_(std::move(policy)),
      listener_(policy_->listener(setup_.listener_index)),
      stream_(ring, this, fd),
      client_ip_(setup_.socket_ip),
      client_port_(setup_.socket_port),
      reading_proxy_header_(listener_.proxy_protocol),
      last_activity_ms_(now_ms),
      last_progress_ms_(now_ms) {}

InboundConnection::~InboundConnection() = default;

// What a peer outside a proxy listener's proxy_protocol_from is told.
constexpr char kProxyPeerRefused[] =
    "421 4.7.1 Error: this listener only accepts connections from its load balancers\r\n";

void InboundConnection::Start() {
  // The PROXY header names the client, and so decides relaying and limits:
  // only the load balancers may send one. Anyone else is refused before a
  // byte of theirs is read.
  if (reading_proxy_header_ && !listener_.proxy_from.Contains(setup_.socket_ip)) {
    reading_proxy_header_ = false;
    probe_->ProxyRefused(setup_.listener_index);
    log::LogEvent("proxy_refused", log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Add("listener", listener_.name)
        .Add("peer", setup_.socket_ip)
        .Emit();
    Refuse(kProxyPeerRefused);
    return;
  }
  stream_.StartReading();
  // Behind a load balancer the greeting waits for the PROXY header: the
  // client's real address decides admission.
  if (!reading_proxy_header_) BeginSession({});
}

void InboundConnection::BeginSession(std::string_view early) {
  if (!host_->Admit(this)) {
    Refuse("421 4.7.0 Too many connections\r\n");
    return;
  }
  admitted_ = true;
  session_ = std::make_unique<SmtpServerSession>(
      policy_->MakeSessionContext(setup_.listener_index, client_ip_, client_port_));
  if (listener_.implicit_tls()) {
    // RFC 8314: the handshake comes first; the greeting follows inside TLS.
    StartTls(early);
    return;
  }
  if (const int64_t delay = policy_->greet_delay_ms(); delay > 0) {
    greet_at_ms_ = host_->NowMs() + delay;
  } else {
    session_->Start(stream_.out());
    stream_.Flush();
  }
  // Bytes behind a PROXY header were sent before our greeting.
  if (!early.empty() && !stream_.closing()) OnStreamData(early);
}

void InboundConnection::MaybeGreet(int64_t now_ms) {
  if (greet_at_ms_ < 0 || now_ms < greet_at_ms_ || stream_.closing() || !session_) return;
  greet_at_ms_ = -1;
  last_progress_ms_ = now_ms;
  session_->Start(stream_.out());
  stream_.Flush();
}

void InboundConnection::StartTls(std::string_view early) {
  TlsServerContext* ctx = policy_->tls();
  if (ctx == nullptr) {
    // No certificate could be loaded: nothing safe to offer.
    log::LogEvent("tls_unavailable", log::Level::kError)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Emit();
    stream_.Close();
    return;
  }
  stream_.StartTlsServer(ctx, early);
}

void InboundConnection::Refuse(std::string_view reply) {
  stream_.out()->append(reply);
  stream_.CloseAfterFlush();
}

void InboundConnection::OnWireBytes(size_t n) {
  probe_->BytesReceived(setup_.listener_index, n);
  last_activity_ms_ = host_->NowMs();
}

void InboundConnection::OnStreamData(std::string_view data) {
  if (reading_proxy_header_) {
    HandleProxyBytes(data);
    return;
  }
  if (!session_) return;  // refused; waiting for the reply to flush
  if (greet_at_ms_ >= 0) {
    // The client spoke before our greeting: a real MTA waits for the 220.
    greet_at_ms_ = -1;
    probe_->Rejection("pregreet");
    log::LogEvent("pregreet", log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Add("client", client_ip_)
        .Emit();
    Refuse("421 4.7.0 Error: SMTP protocol violation (talked before the greeting)\r\n");
    return;
  }
  session_->Receive(data);
  Drive();
}

void InboundConnection::OnStreamEnd(StreamEnd how, std::string_view detail) {
  if (how == StreamEnd::kError && stream_.tls_on()) {
    log::LogEvent("tls_error", log::Level::kWarn)
        .Add("conn", static_cast<int64_t>(setup_.id))
        .Add("error", std::string(detail))
        .Emit();
  }
  if (!session_ || reading_proxy_header_) {
    stream_.Close();  // nobody to answer yet
    return;
  }
  // Answer what was received; Drive() closes once nothing more is owed.
  Drive();
}

void InboundConnection::OnTlsEstablished() {
  TlsSession* tls = stream_.tls();
  TlsFacts facts;
  facts.version = tls->version();
  facts.cipher = tls->cipher();
  facts.bits = tls->cipher_bits();
  facts.alg_bits = tls->cipher_alg_bits();
  if (auto peer = tls->peer_certificate()) {
    facts.peer_cert_sha256 = peer->sha256_cert_hex;
    facts.peer_spki_sha256 = peer->sha256_spki_hex;
  }
  probe_->TlsHandshake(setup_.listener_index, facts.version, facts.cipher, "");
  log::LogEvent("tls")
      .Add("conn", static_cast<int64_t>(setup_.id))
      .Add("version", facts.version)
      .Add("cipher", facts.cipher)
      .Add("resumed", tls->resumed() ? "yes" : "no")
      .Add("client_cert", facts.peer_cert_sha256.empty() ? "none" : facts.peer_cert_sha256)
      .Emit();
  session_->TlsStarted(facts);
  if (listener_.implicit_tls() && !greeted_) {
    greeted_ = true;
    session_->Start(stream_.out());
  }
  Drive();
}

void InboundConnection::OnTlsFailed(std::string_view reason) {
  probe_->TlsHandshake(setup_.listener_index, "", "", reason);
  if (reason == kTlsEofReason) return;
  log::LogEvent("tls_handshake_failed", log::Level::kWarn)
      .Add("conn", static_cast<int64_t>(setup_.id))
      .Add("client", client_ip_)
      .Add("reason", std::string(reason))
      .Emit();
}

void InboundConnection::HandleProxyBytes(std::string_view data) {
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
    probe_->Rejection("proxy_header");
    stream_.Close();
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
  const std::string rest = proxy_buffer_.substr(r.consumed);
  proxy_buffer_.clear();
  proxy_buffer_.shrink_to_fit();
  reading_proxy_header_ = false;
  // Bytes behind the header were sent before our greeting (or are the TLS
  // ClientHello on an implicit-TLS listener).
  BeginSession(rest);
  if (stream_.input_ended() && !stream_.closing()) Drive();
}

void InboundConnection::Drive() {
  if (stream_.closing() || !session_) return;
  bool close = false;
  const SmtpServerSession::Event ev = session_->Process(stream_.out());
  switch (ev) {
    case SmtpServerSession::Event::kSpool: {
      std::string queue_id = host_->NextQueueId();
      AcceptedMessage msg = session_->TakeMessage(queue_id, absl::Now());
      waiting_for_spool_ = true;
      host_->Spool(this, queue_id, std::move(msg));
      break;
    }
    case SmtpServerSession::Event::kAuthCheck:
      waiting_for_auth_ = true;
      host_->CheckAuth(this, session_->TakeAuthRequest());
      break;
    case SmtpServerSession::Event::kStartTls:
      if (!stream_.tls_started()) {
        // The 220 goes out in plaintext; everything after it is TLS. The
        // session already dropped whatever the client pipelined behind
        // STARTTLS.
        if (const uint64_t discarded = session_->discarded_after_starttls(); discarded > 0) {
          probe_->StartTlsDiscarded(setup_.listener_index, discarded);
        }
        stream_.Flush();
        StartTls({});
      }
      break;
    case SmtpServerSession::Event::kClose:
      close = true;
      break;
    default:
      break;
  }
  CountSessionEvents();
  if (stream_.closing()) return;
  // After the peer's end of input nothing more can arrive: once no answer
  // is owed (spool, AUTH), the replies go out and the connection closes.
  if (close || (stream_.input_ended() && !waiting_for_spool_ && !waiting_for_auth_)) {
    stream_.CloseAfterFlush();
  } else {
    stream_.Flush();
  }
}

void InboundConnection::SpoolDone(const absl::Status& status, const std::string& queue_id) {
  waiting_for_spool_ = false;
  if (stream_.closing() || !session_) return;
  session_->SpoolDone(status, queue_id, stream_.out());
  last_activity_ms_ = host_->NowMs();
  Drive();
}

void InboundConnection::AuthDone(AuthOutcome outcome, std::vector<std::string> user_domains) {
  waiting_for_auth_ = false;
  if (stream_.closing() || !session_) return;
  session_->AuthDone(outcome, std::move(user_domains), stream_.out());
  last_activity_ms_ = host_->NowMs();
  Drive();
}

void InboundConnection::Timeout() {
  if (stream_.closing()) return;
  if (session_ && !stream_.tls_handshaking()) {
    session_->Timeout(stream_.out());
    stream_.CloseAfterFlush();
    return;
  }
  // No PROXY header, or no handshake, in time: no channel to answer on.
  if (stream_.tls_handshaking()) probe_->TlsHandshake(setup_.listener_index, "", "", "timeout");
  stream_.Close();
}

void InboundConnection::Shutdown() {
  if (stream_.closing()) return;
  if (session_ && !stream_.tls_handshaking()) {
    session_->Shutdown(stream_.out());
    stream_.CloseAfterFlush();
  } else {
    stream_.Close();
  }
}

void InboundConnection::OnStreamClosing() { host_->ConnectionClosing(this); }

void InboundConnection::CountSessionEvents() {
  for (const std::string& reason : session_->TakeRejections()) probe_->Rejection(reason);
  probe_->Commands(session_->TakeCommandCounts());
  // Progress for the timeouts: a complete command, or the start of content.
  const int64_t now = host_->NowMs();
  if (session_->commands() != commands_seen_) {
    commands_seen_ = session_->commands();
    last_progress_ms_ = now;
  }
  const SmtpServerSession::Phase phase = session_->phase();
  if (phase == SmtpServerSession::Phase::kData && !in_data_) data_started_ms_ = now;
  in_data_ = phase == SmtpServerSession::Phase::kData;
}

}  // namespace postern::engine
