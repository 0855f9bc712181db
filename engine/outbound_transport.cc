#include "engine/outbound_transport.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "engine/outbound_tls_check.h"
#include "engine/ring_sender.h"
#include "engine/smtp_client_session.h"
#include "engine/socket_address.h"
#include "engine/tls_session.h"

namespace postern::engine {
namespace {

using queue::AttemptResult;
using queue::DeliveryJob;

std::string HostPort(const Destination& d) {
  return d.ip.find(':') != std::string::npos ? absl::StrCat("[", d.ip, "]:", d.port)
                                             : absl::StrCat(d.ip, ":", d.port);
}

// The message as the client session sends it.
OutboundMessage ToMessage(const DeliveryJob& job) {
  const queue::v1::Envelope& e = *job.envelope;
  OutboundMessage m;
  m.sender = e.sender();
  for (int i : job.recipients) {
    const auto& r = e.recipients(i);
    m.recipients.push_back(OutboundRecipient{r.address(), r.notify(), r.orcpt()});
  }
  m.dsn_ret = e.dsn_ret();
  m.dsn_envid = e.dsn_envid();
  m.body = *job.body;
  m.smtputf8 = e.smtputf8();
  m.eight_bit = e.eight_bit_mime();
  return m;
}

AttemptResult FromRecipient(const RecipientResult& r, const std::string& label) {
  AttemptResult a;
  switch (r.outcome) {
    case RecipientResult::Outcome::kDelivered:
      a.kind = AttemptResult::kDelivered;
      break;
    case RecipientResult::Outcome::kPermanent:
      a.kind = AttemptResult::kPermanent;
      break;
    case RecipientResult::Outcome::kTemporary:
      a.kind = AttemptResult::kTemporary;
      a.reason =
          r.code > 0 ? queue::v1::DEFER_REASON_TEMPORARY_REPLY : queue::v1::DEFER_REASON_CONNECTION;
      break;
  }
  a.status = r.enhanced_code;
  a.diagnostic = r.code > 0 ? absl::StrCat(r.code, " ", r.enhanced_code, " ", r.text) : r.text;
  a.remote_mta = label;
  a.relayed_without_dsn =
      r.outcome == RecipientResult::Outcome::kDelivered && r.success_notify_not_relayed;
  return a;
}

DestinationPlan FailedPlan(PlanKind kind, std::string status, std::string diagnostic) {
  DestinationPlan plan;
  plan.kind = kind;
  plan.status = std::move(status);
  plan.diagnostic = std::move(diagnostic);
  return plan;
}

DestinationPlan NoResolver() {
  return FailedPlan(PlanKind::kTemporary, "4.4.3", "no DNS resolver configured");
}

TlsClientOptions ClientOptionsFor(const DestinationPolicy& p) {
  TlsClientOptions o;
  o.min_version =
      p.min_version == config::v1::TLS_VERSION_1_3 ? TlsVersion::kTls13 : TlsVersion::kTls12;
  switch (p.ciphers) {
    case config::v1::CIPHER_CLASS_PFS:
      o.ciphers = CipherClass::kPfs;
      break;
    case config::v1::CIPHER_CLASS_STRONG:
      o.ciphers = CipherClass::kStrong;
      break;
    default:
      o.ciphers = CipherClass::kCompat;
  }
  // verify needs the chain checked; testing-mode verify too, to report.
  o.verify_peer = p.mode == config::v1::OUTBOUND_TLS_MODE_VERIFY;
  o.ca_file = p.ca_file;
  return o;
}

}  // namespace

struct OutboundTransport::DestinationState {
  std::string domain;
  std::deque<Job> waiting;
  size_t open = 0;  // connections of this destination
  std::vector<Connection*> idle;
  bool resolving = false;
  std::vector<Destination> addresses;
  int64_t plan_expires_ms = 0;
};

// One outbound socket to one address, and the SMTP session on it.
class OutboundTransport::Connection {
 public:
  Connection(OutboundTransport* t, DestinationState* d, std::vector<Destination> addresses,
             size_t index, bool plaintext_only, AddressFailures failures)
      : t_(t),
        d_(d),
        addresses_(std::move(addresses)),
        index_(index),
        plaintext_only_(plaintext_only),
        failures_(std::move(failures)),
        policy_(t->policy_.For(d->domain)) {}

  ~Connection() = default;

  void Start(std::optional<Job> job) {
    job_ = std::move(job);
    const Destination& a = addresses_[index_];
    label_ = a.Label();
    host_key_ = HostPort(a);
    if (const int64_t until = t_->HostDownUntil(host_key_); until > t_->now_ms_) {
      AddressFailed(false, "",
                    absl::StrCat(label_, ": not tried, it failed recently (retry in ",
                                 (until - t_->now_ms_ + 999) / 1000, "s)"),
                    /*host_down=*/false);
      return;
    }
    auto addr = ParseSocketAddress(host_key_);
    if (!addr.ok()) {
      AddressFailed(false, "", absl::StrCat("bad address ", HostPort(a)));
      return;
    }
    addr_ = *addr;
    fd_ = socket(addr_.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      AddressFailed(false, "", absl::StrCat("socket: ", std::strerror(errno)));
      return;
    }
    SmtpClientOptions options;
    options.helo_name = t_->options_.helo_name;
    const auto mode = policy_.effective_mode();
    if (plaintext_only_ || mode == config::v1::OUTBOUND_TLS_MODE_NONE) {
      options.tls = SmtpClientOptions::Tls::kNever;
    } else if (policy_.enforced() && !policy_.testing) {
      options.tls = SmtpClientOptions::Tls::kRequired;
    } else {
      options.tls = SmtpClientOptions::Tls::kOpportunistic;
    }
    session_ = std::make_unique<SmtpClientSession>(options);
    deadline_ms_ = t_->now_ms_ + t_->options_.connect_timeout_ms;
    ++inflight_;
    t_->ring_->Connect(fd_, reinterpret_cast<const sockaddr*>(&addr_.storage), addr_.length,
                       &connect_op_);
  }

  // A waiting job for an idle connection.
  void Assign(Job job) {
    job_ = std::move(job);
    idle_ = false;
    Drive();
  }

  void Tick(int64_t now_ms) {
    if (closing_) return;
    if (idle_) {
      if (now_ms - idle_since_ms_ >= t_->options_.idle_timeout_ms) Quit();
      return;
    }
    if (deadline_ms_ > 0 && now_ms >= deadline_ms_) {
      if (!connected_) {
        AddressFailed(false, "", absl::StrCat("connect to ", label_, ": timed out"),
                      /*host_down=*/true);
      } else {
        session_->ConnectionLost("timeout");
        Drive();
      }
    }
  }

  void Quit() {
    if (closing_) return;
    if (idle_ && session_ && session_->Quit(&out_).ok()) {
      idle_ = false;
      RemoveFromIdle();
      quitting_ = true;
      deadline_ms_ = t_->now_ms_ + 10000;
      Flush();
      return;
    }
    Close();
  }

  bool idle() const { return idle_; }
  bool Finished() const { return closing_ && inflight_ == 0 && fd_closed_; }
  DestinationState* destination() const { return d_; }

 private:
  class Op : public IoOp {
   public:
    enum Kind { kConnect, kRecv, kSend };
    Op(Connection* c, Kind k) : c_(c), k_(k) {}
    void OnComplete(int res, uint32_t flags) override {
      OutboundTransport* t = c_->t_;
      switch (k_) {
        case kConnect:
          c_->OnConnect(res);
          break;
        case kRecv:
          c_->OnRecv(res, flags);
          break;
        case kSend:
          c_->OnSent(res);
          break;
      }
      // Results go to the queue manager at once, so the window between the
      // receiver's 250 and the durable removal (a duplicate after a crash)
      // stays a group commit long, not a tick; and a destination whose
      // connection closed starts the next one for its waiting jobs now.
      t->DeliverReady();
      t->PumpClosed();
    }

   private:
    Connection* c_;
    Kind k_;
  };

  void OnConnect(int res) {
    --inflight_;
    if (closing_) return MaybeFinish();
    if (res < 0) {
      AddressFailed(false, "", absl::StrCat("connect to ", label_, ": ", std::strerror(-res)),
                    /*host_down=*/true);
      return;
    }
    connected_ = true;
    deadline_ms_ = t_->now_ms_ + t_->options_.command_timeout_ms;
    recv_armed_ = true;
    ++inflight_;
    t_->ring_->Recv(fd_, &recv_op_);
  }

  void OnRecv(int res, uint32_t flags) {
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
      recv_armed_ = false;
      --inflight_;
    }
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
      if (!closing_) HandleBytes(t_->ring_->BufferData(flags, res));
      t_->ring_->ReturnBuffer(flags);
    } else if (res == 0 || (res < 0 && res != -ENOBUFS)) {
      if (!closing_) {
        if (tls_state_ == kHandshake) {
          HandshakeFailed("connection closed during the TLS handshake");
          return;
        }
        session_->ConnectionLost(res == 0 ? "connection closed by the server"
                                          : std::strerror(-res));
        Drive();
      }
    }
    if (!recv_armed_ && !closing_) {
      recv_armed_ = true;
      ++inflight_;
      t_->ring_->Recv(fd_, &recv_op_);
    }
    MaybeFinish();
  }

  void HandleBytes(std::string_view data) {
    deadline_ms_ = t_->now_ms_ + t_->options_.command_timeout_ms;
    if (tls_state_ == kOff) {
      session_->Receive(data);
      Drive();
      return;
    }
    tls_->FeedCiphertext(data);
    if (tls_state_ == kHandshake) {
      const auto r = tls_->DoHandshake();
      if (r == TlsSession::HandshakeResult::kWantIO) {
        Flush();
        return;
      }
      if (r == TlsSession::HandshakeResult::kFailed) {
        HandshakeFailed(tls_->failure_reason());
        return;
      }
      if (!HandshakeDone()) return;
    }
    plaintext_.clear();
    auto n = tls_->ReadPlaintext(&plaintext_);
    if (!plaintext_.empty()) session_->Receive(plaintext_);
    if (!n.ok()) session_->ConnectionLost("TLS connection closed");
    Drive();
  }

  // The session said 220 to STARTTLS: start the handshake.
  void StartTls() {
    auto ctx = t_->ClientContext(policy_);
    if (!ctx.ok()) {
      HandshakeFailed(std::string(ctx.status().message()));
      return;
    }
    tls_ = std::make_unique<TlsSession>(*ctx, addresses_[index_].host);
    tls_state_ = kHandshake;
    const auto r = tls_->DoHandshake();  // the ClientHello
    if (r == TlsSession::HandshakeResult::kFailed) {
      HandshakeFailed(tls_->failure_reason());
      return;
    }
    Flush();
  }

  // Returns false when the session was abandoned (policy not met).
  bool HandshakeDone() {
    tls_state_ = kOn;
    OutboundTlsFacts facts = OutboundTlsFacts::FromSession(*tls_);
    const OutboundTlsVerdict verdict = Evaluate(facts);
    tls_version_ = tls_->version();
    cipher_ = tls_->cipher();
    if (!verdict.ok) {
      if (policy_.testing) {
        t_->observer_->TestingWouldFail(d_->domain, label_, verdict.result_type,
                                        verdict.diagnostic);
        tls_label_ = "tls_unverified";
      } else {
        // Enforced and not met: say nothing more on this connection.
        tls_->Shutdown();
        tls_->TakeCiphertext(sender_.pending());
        AddressFailed(true, verdict.result_type, verdict.diagnostic);
        return false;
      }
    } else if (policy_.mode == config::v1::OUTBOUND_TLS_MODE_VERIFY && !policy_.testing) {
      tls_label_ = "tls_verified";
    } else if (policy_.mode == config::v1::OUTBOUND_TLS_MODE_PIN && !policy_.testing) {
      tls_label_ = "tls_pinned";
    } else {
      tls_label_ = policy_.testing && policy_.mode == config::v1::OUTBOUND_TLS_MODE_VERIFY
                       ? "tls_verified"
                       : "tls_unverified";
    }
    verification_ = verdict.diagnostic;
    session_->TlsStarted(&out_);
    return true;
  }

  OutboundTlsVerdict Evaluate(const OutboundTlsFacts& facts) {
    OutboundTlsRequirements req;
    req.mode = policy_.mode;
    req.min_version = policy_.min_version;
    req.match = policy_.match;
    req.pins = policy_.pins;
    auto check = OutboundTlsCheck::Create(req);
    if (!check.ok()) {
      OutboundTlsVerdict v;
      v.ok = false;
      v.result_type = kTlsrptValidationFailure;
      v.diagnostic = std::string(check.status().message());
      return v;
    }
    return check->Evaluate(facts, addresses_[index_].host, d_->domain);
  }

  void HandshakeFailed(const std::string& reason) {
    OutboundTlsFacts facts;
    if (tls_) facts = OutboundTlsFacts::FromSession(*tls_);
    facts.established = false;
    if (facts.failure_reason.empty()) facts.failure_reason = reason;
    const bool enforced = policy_.enforced() && !policy_.testing;
    if (enforced) {
      const OutboundTlsVerdict v = Evaluate(facts);
      AddressFailed(true, v.ok ? kTlsrptValidationFailure : v.result_type,
                    v.ok ? reason : v.diagnostic);
      return;
    }
    if (policy_.testing) {
      const OutboundTlsVerdict v = Evaluate(facts);
      if (!v.ok) t_->observer_->TestingWouldFail(d_->domain, label_, v.result_type, v.diagnostic);
    }
    // Opportunistic: the same address again, in plaintext.
    t_->observer_->PlaintextFallback(d_->domain, label_);
    Retry(index_, /*plaintext_only=*/true);
  }

  void Drive() {
    if (closing_) return;
    for (;;) {
      const SmtpClientSession::Event e = session_->Process(&out_);
      switch (e) {
        case SmtpClientSession::Event::kNeedInput:
          Flush();
          return;
        case SmtpClientSession::Event::kStartTls:
          Flush();
          if (tls_state_ == kOff) StartTls();
          return;
        case SmtpClientSession::Event::kReady:
          if (tls_state_ == kOff && tls_label_.empty()) tls_label_ = "plaintext";
          if (!host_up_reported_) {
            host_up_reported_ = true;
            t_->HostUp(host_key_);
          }
          if (job_ && !message_started_) {
            message_ = ToMessage(job_->job);
            started_ms_ = t_->now_ms_;
            absl::Status st = session_->StartMessage(message_, &out_);
            if (!st.ok()) {
              // The message cannot be put on the wire at all: permanent.
              AttemptResult r;
              r.kind = AttemptResult::kPermanent;
              r.status = "5.6.0";
              r.diagnostic = std::string(st.message());
              Finish(std::vector<AttemptResult>(job_->job.recipients.size(), r));
              continue;
            }
            message_started_ = true;
            continue;
          }
          Flush();
          if (!job_) BecomeIdle();
          return;
        case SmtpClientSession::Event::kMessageDone: {
          auto result = session_->TakeResult();
          FinishWith(result);
          continue;
        }
        case SmtpClientSession::Event::kClosed:
        case SmtpClientSession::Event::kFailed: {
          auto result = session_->TakeResult();
          if (result && job_ && message_started_) {
            FinishWith(result);
            Close();
            return;
          }
          if (job_ && !quitting_) {
            const ConnectionOutcome& o = session_->outcome();
            if (o.kind == ConnectionOutcome::Kind::kTlsUnavailable) {
              AddressFailed(
                  true, kTlsrptStarttlsNotSupported,
                  absl::StrCat("TLS required but ", label_, " ",
                               o.reason == "starttls-rejected" ? "refused STARTTLS"
                                                               : "does not offer STARTTLS"));
              return;
            }
            AddressFailed(
                false, "",
                absl::StrCat(label_, ": ", o.diagnostic.empty() ? o.reason : o.diagnostic));
            return;
          }
          Flush();
          Close();
          return;
        }
      }
    }
  }

  void FinishWith(const std::optional<MessageResult>& result) {
    std::vector<AttemptResult> out;
    if (result) {
      for (const RecipientResult& r : result->recipients) out.push_back(FromRecipient(r, label_));
      t_->observer_->MessageSent(job_->job, label_, tls_label_.empty() ? "plaintext" : tls_label_,
                                 tls_version_, cipher_, verification_,
                                 result->data_reply ? result->data_reply->ToString() : "");
    }
    out.resize(job_->job.recipients.size());
    Finish(std::move(out));
  }

  // Hands the results on; a connection that can go on takes the next
  // waiting job of its destination.
  void Finish(std::vector<AttemptResult> results, bool reusable = true) {
    Job job = std::move(*job_);
    job_.reset();
    message_started_ = false;
    t_->JobFinished(std::move(job), std::move(results));
    if (reusable && !closing_) job_ = t_->NextJob(d_);
  }

  void BecomeIdle() {
    if (idle_ || closing_) return;
    idle_ = true;
    idle_since_ms_ = t_->now_ms_;
    deadline_ms_ = 0;
    d_->idle.push_back(this);
  }

  void RemoveFromIdle() {
    auto& v = d_->idle;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
  }

  // This address did not take the message: the next one does, or the job
  // fails with what the addresses said.
  // host_down: the address itself failed (not our policy): remember it.
  void AddressFailed(bool tls, const std::string& tls_result, const std::string& diagnostic,
                     bool host_down = false) {
    if (host_down) t_->HostFailed(host_key_);
    if (tls) {
      failures_.tls = true;
      failures_.tls_result = tls_result;
    }
    failures_.diagnostic = diagnostic;
    failures_.label = label_;
    t_->observer_->SessionDone(label_, tls ? tls_result : "connection", diagnostic);
    if (job_ && index_ + 1 < addresses_.size()) {
      Retry(index_ + 1, false);
      return;
    }
    if (job_) {
      AttemptResult r;
      r.kind = AttemptResult::kTemporary;
      r.remote_mta = failures_.label;
      if (failures_.tls) {
        r.reason = queue::v1::DEFER_REASON_TLS_REQUIRED;
        r.status = "4.7.5";
        r.tls_result = failures_.tls_result;
        r.diagnostic =
            absl::StrCat("TLS required: ", failures_.tls_result, " (", failures_.diagnostic, ")");
      } else {
        r.reason = queue::v1::DEFER_REASON_CONNECTION;
        r.status = "4.4.1";
        r.diagnostic = failures_.diagnostic;
      }
      Finish(std::vector<AttemptResult>(job_->job.recipients.size(), r), /*reusable=*/false);
    }
    Close();
  }

  // Hands the job to a new connection at `index` and closes this one.
  void Retry(size_t index, bool plaintext_only) {
    std::optional<Job> job = std::move(job_);
    job_.reset();
    Close();
    if (!job) return;
    t_->StartConnection(d_, addresses_, index, plaintext_only, failures_, std::move(*job));
  }

  void Flush() {
    if (closing_ && fd_closed_) return;
    if (!out_.empty()) {
      if (tls_state_ == kOn) {
        if (!tls_->WritePlaintext(out_).ok()) session_->ConnectionLost("TLS write failed");
      } else if (tls_state_ == kOff) {
        sender_.pending()->append(out_);
      }
      if (tls_state_ != kHandshake) out_.clear();
    }
    if (tls_) tls_->TakeCiphertext(sender_.pending());
    if (fd_ >= 0 && sender_.Send(fd_)) ++inflight_;
  }

  void OnSent(int res) {
    --inflight_;
    if (sender_.OnSent(fd_, res, /*resend=*/true)) {
      ++inflight_;  // the rest of a short send
      return;
    }
    if (res < 0) {
      if (!closing_) {
        session_->ConnectionLost(std::strerror(-res));
        Drive();
      }
      MaybeFinish();
      return;
    }
    if (!closing_) Flush();
    MaybeFinish();
  }

 public:
  void Close() {
    if (closing_) return;
    closing_ = true;
    if (idle_) RemoveFromIdle();
    idle_ = false;
    if (recv_armed_) t_->ring_->Cancel(&recv_op_);
    if (fd_ >= 0 && connected_) shutdown(fd_, SHUT_RDWR);
    if (!connected_ && inflight_ > 0) t_->ring_->Cancel(&connect_op_);
    t_->ConnectionClosed(this);
    MaybeFinish();
  }

 private:
  void MaybeFinish() {
    if (!closing_ || inflight_ != 0 || fd_closed_) return;
    if (fd_ >= 0) t_->ring_->Close(fd_);
    fd_closed_ = true;
  }

  OutboundTransport* t_;
  DestinationState* d_;
  std::vector<Destination> addresses_;
  size_t index_;
  bool plaintext_only_;
  AddressFailures failures_;
  DestinationPolicy policy_;
  std::string label_;
  std::string host_key_;  // "ip:port", the dead-host cache key
  bool host_up_reported_ = false;
  SocketAddress addr_;
  int fd_ = -1;
  std::unique_ptr<SmtpClientSession> session_;
  enum TlsState { kOff, kHandshake, kOn } tls_state_ = kOff;
  std::unique_ptr<TlsSession> tls_;
  std::string tls_label_, tls_version_, cipher_, verification_;
  std::optional<Job> job_;
  OutboundMessage message_;
  bool message_started_ = false;
  int64_t started_ms_ = 0;
  std::string out_, plaintext_;
  Op connect_op_{this, Op::kConnect};
  Op recv_op_{this, Op::kRecv};
  Op send_op_{this, Op::kSend};
  RingSender sender_{t_->ring_, &send_op_};  // the wire bytes, in order
  int inflight_ = 0;
  bool connected_ = false;
  bool recv_armed_ = false;
  bool closing_ = false;
  bool fd_closed_ = false;
  bool idle_ = false;
  bool quitting_ = false;
  int64_t idle_since_ms_ = 0;
  int64_t deadline_ms_ = 0;
};

// Drives the resolver's sockets and timer through the ring.
class OutboundTransport::DnsDriver {
 public:
  DnsDriver(IoRing* ring, DnsResolver* resolver) : ring_(ring), resolver_(resolver) {
    resolver_->set_interest_callback([this](int fd, bool read, bool write) {
      Interest& i = fds_[fd];
      i.read = read;
      i.write = write;
    });
  }

  // Arms polls for sockets c-ares waits on and a timer for its deadline.
  void Arm() {
    // Ops retired by an earlier call have completed by now unless armed; an
    // op retired in this call may be the one running, so it waits a round.
    std::erase_if(retired_, [](const std::unique_ptr<PollOp>& op) { return !op->armed; });
    for (auto it = fds_.begin(); it != fds_.end();) {
      const int fd = it->first;
      Interest& i = it->second;
      if (!i.read && !i.write) {
        if (i.op) {
          if (i.op->armed) ring_->Cancel(i.op.get());
          i.op->retired = true;
          retired_.push_back(std::move(i.op));
        }
        it = fds_.erase(it);
        continue;
      }
      if (!i.op) i.op = std::make_unique<PollOp>(this, fd);
      if (!i.op->armed) {
        i.op->armed = true;
        ring_->Poll(fd, (i.read ? POLLIN : 0) | (i.write ? POLLOUT : 0), i.op.get());
      }
      ++it;
    }
    const int64_t wait = resolver_->NextTimeoutMs();
    if (wait < 0) return;
    // A result ready now (a cache hit) must not wait behind a long timer.
    TimerOp& t = wait == 0 ? immediate_ : timer_;
    if (t.armed) return;
    t.armed = true;
    t.ts.tv_sec = wait / 1000;
    t.ts.tv_nsec = (wait % 1000) * 1000000;
    ring_->Timeout(&t.ts, &t);
  }

 private:
  struct PollOp : IoOp {
    PollOp(DnsDriver* d, int fd) : d(d), fd(fd) {}
    void OnComplete(int res, uint32_t) override {
      armed = false;
      if (res == -ECANCELED || retired) return;
      d->resolver_->ProcessFd(fd, (res & (POLLIN | POLLERR | POLLHUP)) != 0 || res < 0,
                              (res & POLLOUT) != 0);
      d->Arm();
    }
    DnsDriver* d;
    int fd;
    bool armed = false;
    bool retired = false;  // c-ares closed the socket; freed by a later Arm()
  };
  struct TimerOp : IoOp {
    explicit TimerOp(DnsDriver* d) : d(d) {}
    void OnComplete(int, uint32_t) override {
      armed = false;
      d->resolver_->ProcessTimeouts();
      d->Arm();
    }
    DnsDriver* d;
    __kernel_timespec ts{};
    bool armed = false;
  };
  struct Interest {
    bool read = false;
    bool write = false;
    std::unique_ptr<PollOp> op;
  };

  IoRing* ring_;
  DnsResolver* resolver_;
  std::map<int, Interest> fds_;
  std::vector<std::unique_ptr<PollOp>> retired_;
  TimerOp timer_{this};
  TimerOp immediate_{this};
};

OutboundTransport::OutboundTransport(IoRing* ring, OutboundOptions options, OutboundPolicy policy,
                                     RouteTable routes, std::unique_ptr<DnsResolver> resolver,
                                     OutboundObserver* observer)
    : ring_(ring),
      options_(std::move(options)),
      policy_(std::move(policy)),
      routes_(std::move(routes)),
      resolver_(std::move(resolver)),
      observer_(observer),
      rng_(std::random_device{}()),
      now_ms_(MonotonicMs()) {
  if (resolver_) dns_driver_ = std::make_unique<DnsDriver>(ring_, resolver_.get());
}

OutboundTransport::~OutboundTransport() = default;

void OutboundTransport::Reconfigure(OutboundOptions options, OutboundPolicy policy,
                                    RouteTable routes) {
  options_ = std::move(options);
  policy_ = std::move(policy);
  routes_ = std::move(routes);
  for (auto& [domain, d] : destinations_) d->plan_expires_ms = 0;  // re-plan
}

OutboundTransport::DestinationState& OutboundTransport::Dest(const std::string& domain) {
  auto& slot = destinations_[domain];
  if (!slot) {
    slot = std::make_unique<DestinationState>();
    slot->domain = domain;
  }
  return *slot;
}

void OutboundTransport::Deliver(queue::DeliveryJob job, Done done) {
  now_ms_ = MonotonicMs();
  DestinationState& d = Dest(job.domain);
  d.waiting.push_back(Job{std::move(job), std::move(done)});
  Pump(d);
}

void OutboundTransport::Pump(DestinationState& d) {
  if (shutting_down_) {
    AttemptResult r;
    r.kind = AttemptResult::kTemporary;
    r.reason = queue::v1::DEFER_REASON_CONNECTION;
    r.status = "4.3.2";
    r.diagnostic = "delivery stopped: the node is shutting down";
    FailAll(d, r);
    return;
  }
  if (d.waiting.empty()) return;
  if (d.resolving) return;
  if (d.addresses.empty() || now_ms_ >= d.plan_expires_ms) {
    if (d.open == 0 || d.addresses.empty()) {
      Resolve(d);
      return;
    }
  }
  while (!d.waiting.empty() && !d.idle.empty()) {
    Connection* c = d.idle.back();
    d.idle.pop_back();
    Job job = std::move(d.waiting.front());
    d.waiting.pop_front();
    c->Assign(std::move(job));
  }
  while (!d.waiting.empty() && d.open < options_.destination_concurrency &&
         connections_.size() < options_.max_connections) {
    Job job = std::move(d.waiting.front());
    d.waiting.pop_front();
    StartConnection(&d, d.addresses, 0, false, AddressFailures{}, std::move(job));
  }
}

void OutboundTransport::StartConnection(DestinationState* d, std::vector<Destination> addresses,
                                        size_t index, bool plaintext_only, AddressFailures failures,
                                        Job job) {
  auto c = std::make_unique<Connection>(this, d, std::move(addresses), index, plaintext_only,
                                        std::move(failures));
  Connection* raw = c.get();
  connections_[raw] = std::move(c);
  ++d->open;
  observer_->ConnectionsChanged(connections_.size());
  raw->Start(std::move(job));
}

void OutboundTransport::Resolve(DestinationState& d) {
  d.resolving = true;
  const std::string domain = d.domain;
  if (auto plan = PlanWithoutDns(domain, routes_, options_.smtp_port)) {
    if (plan->kind != PlanKind::kOk) {
      PlanDone(domain, FailedPlan(plan->kind, plan->status, plan->diagnostic));
      return;
    }
    ResolveAddresses(domain, plan->hops);
    return;
  }
  if (!resolver_) {
    PlanDone(domain, NoResolver());
    return;
  }
  resolver_->LookupMx(domain, [this, domain](absl::StatusOr<std::vector<MxRecord>> mx) {
    NextHopPlan plan = PlanFromMx(domain, mx, options_.smtp_port, rng_);
    if (plan.kind != PlanKind::kOk) {
      PlanDone(domain, FailedPlan(plan.kind, plan.status, plan.diagnostic));
      return;
    }
    ResolveAddresses(domain, std::move(plan.hops));
  });
  dns_driver_->Arm();
}

void OutboundTransport::ResolveAddresses(const std::string& domain, std::vector<NextHop> hops) {
  auto answers = std::make_shared<AddressAnswers>();
  auto left = std::make_shared<size_t>(0);
  for (const NextHop& h : hops) {
    if (h.ip_literal) continue;
    if (answers->count(h.host) != 0) continue;
    answers->emplace(h.host, absl::UnavailableError("pending"));
    ++*left;
  }
  if (*left == 0) {
    PlanDone(domain, OrderDestinations(hops, *answers));
    return;
  }
  if (!resolver_) {
    PlanDone(domain, NoResolver());
    return;
  }
  auto shared_hops = std::make_shared<std::vector<NextHop>>(std::move(hops));
  for (const auto& [host, unused] : *answers) {
    const std::string name = host;
    resolver_->LookupAddresses(name, [this, domain, name, answers, left, shared_hops](
                                         absl::StatusOr<std::vector<std::string>> result) {
      (*answers)[name] = std::move(result);
      if (--*left == 0) PlanDone(domain, OrderDestinations(*shared_hops, *answers));
    });
  }
  dns_driver_->Arm();
}

void OutboundTransport::PlanDone(const std::string& domain, DestinationPlan plan) {
  now_ms_ = MonotonicMs();
  DestinationState& d = Dest(domain);
  d.resolving = false;
  if (plan.kind != PlanKind::kOk) {
    AttemptResult r;
    r.kind =
        plan.kind == PlanKind::kPermanent ? AttemptResult::kPermanent : AttemptResult::kTemporary;
    r.reason = queue::v1::DEFER_REASON_DNS;
    r.status = plan.status;
    r.diagnostic = plan.diagnostic;
    d.addresses.clear();
    FailAll(d, r);
    return;
  }
  d.addresses = std::move(plan.destinations);
  d.plan_expires_ms = now_ms_ + options_.plan_ttl_ms;
  Pump(d);
}

void OutboundTransport::FailAll(DestinationState& d, const AttemptResult& result) {
  while (!d.waiting.empty()) {
    Job job = std::move(d.waiting.front());
    d.waiting.pop_front();
    ready_.emplace_back(std::move(job.done),
                        std::vector<AttemptResult>(job.job.recipients.size(), result));
  }
}

void OutboundTransport::JobFinished(Job job, std::vector<AttemptResult> results) {
  ready_.emplace_back(std::move(job.done), std::move(results));
}

std::optional<OutboundTransport::Job> OutboundTransport::NextJob(DestinationState* d) {
  if (d->waiting.empty() || shutting_down_) return std::nullopt;
  Job next = std::move(d->waiting.front());
  d->waiting.pop_front();
  return next;
}

void OutboundTransport::ConnectionClosed(Connection* c) {
  DestinationState* d = c->destination();
  if (d->open > 0) --d->open;
  finished_.push_back(c);
  if (!d->waiting.empty()) to_pump_.push_back(d->domain);
}

void OutboundTransport::PumpClosed() {
  while (!to_pump_.empty()) {
    std::vector<std::string> domains = std::move(to_pump_);
    to_pump_.clear();
    for (const std::string& domain : domains) {
      auto it = destinations_.find(domain);
      if (it != destinations_.end()) Pump(*it->second);
    }
  }
}

void OutboundTransport::DeliverReady() {
  if (delivering_) return;
  delivering_ = true;
  // The queue manager may Deliver() again from a callback: take the list.
  while (!ready_.empty()) {
    auto batch = std::move(ready_);
    ready_.clear();
    for (auto& [done, results] : batch) done(std::move(results));
  }
  delivering_ = false;
}

void OutboundTransport::Reap() {
  for (auto it = finished_.begin(); it != finished_.end();) {
    if ((*it)->Finished()) {
      connections_.erase(*it);
      it = finished_.erase(it);
    } else {
      ++it;
    }
  }
  observer_->ConnectionsChanged(connections_.size());
}

void OutboundTransport::Tick(int64_t) {
  now_ms_ = MonotonicMs();
  std::vector<Connection*> all;
  all.reserve(connections_.size());
  for (auto& [raw, c] : connections_) all.push_back(raw);
  for (Connection* c : all) c->Tick(now_ms_);
  for (auto& [domain, d] : destinations_) {
    if (!d->waiting.empty()) Pump(*d);
  }
  DeliverReady();
  Reap();
  // Forget destinations with nothing going on.
  for (auto it = destinations_.begin(); it != destinations_.end();) {
    DestinationState& d = *it->second;
    if (d.waiting.empty() && d.open == 0 && !d.resolving && now_ms_ >= d.plan_expires_ms) {
      it = destinations_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(hosts_, [this](const auto& entry) {
    return entry.second.down_until_ms + options_.max_host_backoff_ms < now_ms_;
  });
  if (dns_driver_) dns_driver_->Arm();
}

void OutboundTransport::Shutdown() {
  shutting_down_ = true;
  std::vector<Connection*> all;
  for (auto& [raw, c] : connections_) all.push_back(raw);
  for (Connection* c : all) {
    if (c->idle()) c->Quit();
  }
  for (auto& [domain, d] : destinations_) Pump(*d);
  DeliverReady();
}

int64_t OutboundTransport::HostDownUntil(const std::string& key) const {
  auto it = hosts_.find(key);
  return it == hosts_.end() ? 0 : it->second.down_until_ms;
}

void OutboundTransport::HostFailed(const std::string& key) {
  HostState& h = hosts_[key];
  ++h.failures;
  int64_t backoff = options_.host_backoff_ms;
  for (int i = 1; i < h.failures && backoff < options_.max_host_backoff_ms; ++i) backoff *= 2;
  h.down_until_ms = now_ms_ + std::min(backoff, options_.max_host_backoff_ms);
}

void OutboundTransport::HostUp(const std::string& key) { hosts_.erase(key); }

absl::StatusOr<TlsClientContext*> OutboundTransport::ClientContext(const DestinationPolicy& p) {
  const TlsClientOptions o = ClientOptionsFor(p);
  const std::string key =
      absl::StrCat(o.verify_peer, "|", o.ca_file, "|", static_cast<int>(o.min_version), "|",
                   static_cast<int>(o.ciphers));
  auto& slot = tls_contexts_[key];
  if (!slot) {
    auto ctx = TlsClientContext::Create(o);
    if (!ctx.ok()) {
      tls_contexts_.erase(key);
      return ctx.status();
    }
    slot = std::move(*ctx);
  }
  return slot.get();
}

}  // namespace postern::engine
