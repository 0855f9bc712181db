#include "engine/outbound/outbound_connection.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tls/tls_session.h"

namespace postern::engine {
namespace {

using queue::AttemptResult;
using queue::DeliveryJob;

std::string HostPort(const HostAddress& d) {
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

}  // namespace

OutboundConnection::OutboundConnection(OutboundConnectionHost* host, DestinationQueue* d,
                                       std::string domain, DomainTlsPolicy policy,
                                       std::vector<HostAddress> addresses, size_t index,
                                       bool plaintext_only, AddressFailures failures)
    : host_(host),
      d_(d),
      domain_(std::move(domain)),
      policy_(std::move(policy)),
      addresses_(std::move(addresses)),
      index_(index),
      plaintext_only_(plaintext_only),
      failures_(std::move(failures)),
      stream_(host->ring(), this) {}

OutboundConnection::~OutboundConnection() = default;

void OutboundConnection::Start(std::optional<OutboundJob> job) {
  job_ = std::move(job);
  const HostAddress& a = addresses_[index_];
  label_ = a.Label();
  host_key_ = HostPort(a);
  const int64_t now = host_->NowMs();
  if (const int64_t until = host_->HostDownUntil(host_key_); until > now) {
    AddressFailed(false, "",
                  absl::StrCat(label_, ": not tried, it failed recently (retry in ",
                               (until - now + 999) / 1000, "s)"),
                  /*host_down=*/false);
    return;
  }
  auto addr = ParseSocketAddress(host_key_);
  if (!addr.ok()) {
    AddressFailed(false, "", absl::StrCat("bad address ", HostPort(a)));
    return;
  }
  SmtpClientOptions options;
  options.helo_name = host_->options().helo_name;
  const auto mode = policy_.effective_mode();
  if (plaintext_only_ || mode == config::v1::OUTBOUND_TLS_MODE_NONE) {
    options.tls = SmtpClientOptions::Tls::kNever;
  } else if (policy_.enforced() && !policy_.testing) {
    options.tls = SmtpClientOptions::Tls::kRequired;
  } else {
    options.tls = SmtpClientOptions::Tls::kOpportunistic;
  }
  session_ = std::make_unique<SmtpClientSession>(options);
  deadline_ms_ = now + host_->options().connect_timeout_ms;
  if (absl::Status st = stream_.Connect(*addr); !st.ok()) {
    AddressFailed(false, "", std::string(st.message()));
  }
}

void OutboundConnection::Assign(OutboundJob job) {
  job_ = std::move(job);
  idle_ = false;
  Drive();
}

void OutboundConnection::Tick(int64_t now_ms) {
  if (stream_.closing()) return;
  if (idle_) {
    if (now_ms - idle_since_ms_ >= host_->options().idle_timeout_ms) Quit();
    return;
  }
  if (deadline_ms_ > 0 && now_ms >= deadline_ms_) {
    if (!stream_.connected()) {
      AddressFailed(false, "", absl::StrCat("connect to ", label_, ": timed out"),
                    /*host_down=*/true);
    } else {
      session_->ConnectionLost("timeout");
      Drive();
    }
  }
}

void OutboundConnection::Quit() {
  if (stream_.closing()) return;
  if (idle_ && session_ && session_->Quit(stream_.out()).ok()) {
    idle_ = false;
    host_->SetIdle(this, false);
    quitting_ = true;
    deadline_ms_ = host_->NowMs() + 10000;
    stream_.Flush();
    return;
  }
  Close();
}

void OutboundConnection::Close() { stream_.Close(); }

void OutboundConnection::OnStreamClosing() {
  if (idle_) host_->SetIdle(this, false);
  idle_ = false;
  // Exactly once: a job taken here but not started (the next job, taken
  // just before the server closed) goes back to its destination.
  if (job_) {
    OutboundJob job = std::move(*job_);
    job_.reset();
    host_->Requeue(d_, std::move(job));
  }
  host_->ConnectionClosing(this);
}

void OutboundConnection::OnCompletionDone() {
  // Results go to the queue manager at once, so the window between the
  // receiver's 250 and the durable removal (a duplicate after a crash)
  // stays a group commit long, not a tick; and a destination whose
  // connection closed starts the next one for its waiting jobs now.
  host_->AfterCompletion();
}

void OutboundConnection::OnConnected(int res) {
  if (res < 0) {
    AddressFailed(false, "", absl::StrCat("connect to ", label_, ": ", std::strerror(-res)),
                  /*host_down=*/true);
    return;
  }
  deadline_ms_ = host_->NowMs() + host_->options().command_timeout_ms;
}

void OutboundConnection::OnWireBytes(size_t n) {
  deadline_ms_ = host_->NowMs() + host_->options().command_timeout_ms;
}

void OutboundConnection::OnStreamData(std::string_view data) {
  session_->Receive(data);
  Drive();
}

void OutboundConnection::OnStreamEnd(StreamEnd how, std::string_view detail) {
  switch (how) {
    case StreamEnd::kEof:
      session_->ConnectionLost("connection closed by the server");
      break;
    case StreamEnd::kTlsClosed:
      session_->ConnectionLost("TLS connection closed");
      break;
    case StreamEnd::kError:
      session_->ConnectionLost(std::string(detail));
      break;
  }
  Drive();
}

void OutboundConnection::OnSendFailed(int err) {
  session_->ConnectionLost(std::strerror(-err));
  Drive();
}

// The session said 220 to STARTTLS: start the handshake.
void OutboundConnection::StartTls() {
  auto ctx = host_->ClientContext(policy_);
  if (!ctx.ok()) {
    HandshakeFailed(std::string(ctx.status().message()));
    return;
  }
  stream_.StartTlsClient(*ctx, addresses_[index_].host);
}

void OutboundConnection::OnTlsEstablished() {
  if (HandshakeDone()) Drive();
}

void OutboundConnection::OnTlsFailed(std::string_view reason) {
  HandshakeFailed(reason == kTlsEofReason ? "connection closed during the TLS handshake"
                                          : std::string(reason));
}

bool OutboundConnection::HandshakeDone() {
  TlsSession& tls = *stream_.tls();
  OutboundTlsFacts facts = OutboundTlsFacts::FromSession(tls);
  const OutboundTlsVerdict verdict = Evaluate(facts);
  tls_version_ = tls.version();
  cipher_ = tls.cipher();
  if (!verdict.ok) {
    if (policy_.testing) {
      host_->observer()->TestingWouldFail(domain_, label_, verdict.result_type, verdict.diagnostic);
      tls_label_ = "tls_unverified";
    } else {
      // Enforced and not met: say nothing more on this connection.
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
  session_->TlsStarted(stream_.out());
  return true;
}

OutboundTlsVerdict OutboundConnection::Evaluate(const OutboundTlsFacts& facts) {
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
  return check->Evaluate(facts, addresses_[index_].host, domain_);
}

void OutboundConnection::HandshakeFailed(const std::string& reason) {
  OutboundTlsFacts facts;
  if (stream_.tls() != nullptr) facts = OutboundTlsFacts::FromSession(*stream_.tls());
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
    if (!v.ok) host_->observer()->TestingWouldFail(domain_, label_, v.result_type, v.diagnostic);
  }
  // Opportunistic: the same address again, in plaintext.
  host_->observer()->PlaintextFallback(domain_, label_);
  Retry(index_, /*plaintext_only=*/true);
}

void OutboundConnection::Drive() {
  if (stream_.closing()) return;
  for (;;) {
    const SmtpClientSession::Event e = session_->Process(stream_.out());
    switch (e) {
      case SmtpClientSession::Event::kNeedInput:
        stream_.Flush();
        return;
      case SmtpClientSession::Event::kStartTls:
        stream_.Flush();
        if (!stream_.tls_started()) StartTls();
        return;
      case SmtpClientSession::Event::kReady:
        if (!stream_.tls_started() && tls_label_.empty()) tls_label_ = "plaintext";
        if (!host_up_reported_) {
          host_up_reported_ = true;
          host_->HostUp(host_key_);
        }
        if (job_ && !message_started_) {
          message_ = ToMessage(job_->job);
          absl::Status st = session_->StartMessage(message_, stream_.out());
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
        stream_.Flush();
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
          AddressFailed(false, "",
                        absl::StrCat(label_, ": ", o.diagnostic.empty() ? o.reason : o.diagnostic));
          return;
        }
        stream_.Flush();
        Close();
        return;
      }
    }
  }
}

void OutboundConnection::FinishWith(const std::optional<MessageResult>& result) {
  std::vector<AttemptResult> out;
  if (result) {
    for (const RecipientResult& r : result->recipients) out.push_back(FromRecipient(r, label_));
    host_->observer()->MessageSent(job_->job, label_, tls_label_.empty() ? "plaintext" : tls_label_,
                                   tls_version_, cipher_, verification_,
                                   result->data_reply ? result->data_reply->ToString() : "");
  }
  out.resize(job_->job.recipients.size());
  Finish(std::move(out));
}

// Hands the results on; a connection that can go on takes the next waiting
// job of its destination.
void OutboundConnection::Finish(std::vector<AttemptResult> results, bool reusable) {
  OutboundJob job = std::move(*job_);
  job_.reset();
  message_started_ = false;
  host_->JobFinished(std::move(job), std::move(results));
  if (reusable && !stream_.closing()) job_ = host_->NextJob(d_);
}

void OutboundConnection::BecomeIdle() {
  if (idle_ || stream_.closing()) return;
  idle_ = true;
  idle_since_ms_ = host_->NowMs();
  deadline_ms_ = 0;
  host_->SetIdle(this, true);
}

void OutboundConnection::AddressFailed(bool tls, const std::string& tls_result,
                                       const std::string& diagnostic, bool host_down) {
  if (host_down) host_->HostFailed(host_key_);
  if (tls) {
    failures_.tls = true;
    failures_.tls_result = tls_result;
  }
  failures_.diagnostic = diagnostic;
  failures_.label = label_;
  host_->observer()->SessionDone(label_, tls ? tls_result : "connection", diagnostic);
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

void OutboundConnection::Retry(size_t index, bool plaintext_only) {
  std::optional<OutboundJob> job = std::move(job_);
  job_.reset();
  Close();
  if (!job) return;
  host_->StartConnection(d_, addresses_, index, plaintext_only, failures_, std::move(*job));
}

}  // namespace postern::engine
