#include "engine/inbound/inbound_probe.h"

#include "common/log.h"
#include "common/metric_table.h"

namespace postern::engine {

std::string TlsFailureClass(std::string_view reason) {
  auto has = [reason](std::string_view s) { return reason.find(s) != std::string_view::npos; };
  if (reason == "eof" || has("unexpected eof")) return "eof";
  if (reason == "timeout") return "timeout";
  if (has("version") || has("protocol")) return "protocol_version";
  if (has("no shared cipher") || has("handshake failure") || has("no cipher")) {
    return "no_shared_cipher";
  }
  if (has("certificate")) return "bad_certificate";
  return "other";
}

std::string CipherClassOf(std::string_view version, std::string_view cipher) {
  if (version == "TLSv1.3") return "strong";
  const bool ecdhe = cipher.find("ECDHE") != std::string_view::npos;
  const bool aead = cipher.find("GCM") != std::string_view::npos ||
                    cipher.find("CHACHA20") != std::string_view::npos;
  if (ecdhe) return aead ? "strong" : "pfs";
  return "compat";
}

void InboundProbe::ConnectionAccepted(size_t listener) {
  metrics_->Add(metrics::kConnectionsAccepted, listener);
  metrics_->Add(metrics::kConnectionsActive, listener);
}

void InboundProbe::ConnectionRefused(size_t listener) {
  metrics_->Add(metrics::kConnectionsRefused, listener);
}

void InboundProbe::ProxyRefused(size_t listener) {
  metrics_->Add(metrics::kProxyRefused, listener);
}

void InboundProbe::ConnectionClosed(size_t listener) {
  metrics_->Set(metrics::kConnectionsActive, listener,
                metrics_->Get(metrics::kConnectionsActive, listener) - 1);
}

void InboundProbe::BytesReceived(size_t listener, uint64_t bytes) {
  metrics_->Add(metrics::kBytesReceived, listener, bytes);
}

void InboundProbe::Rejection(std::string_view reason) {
  metrics_->Add(metrics::kMessagesRejected, metrics::RejectReasonIndex(reason));
}

void InboundProbe::Commands(const std::array<uint64_t, kCommandVerbCount>& counts) {
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    metrics_->Add(metrics::kSmtpCommands,
                  metrics::VerbIndex(CommandVerbName(static_cast<CommandVerb>(i))), counts[i]);
  }
}

void InboundProbe::TlsHandshake(size_t listener, std::string_view version, std::string_view cipher,
                                std::string_view failure) {
  metrics_->Add(metrics::kTlsHandshakes,
                metrics::ListenerTlsIndex(listener, version,
                                          failure.empty() ? CipherClassOf(version, cipher) : "",
                                          failure.empty() ? "" : TlsFailureClass(failure)));
}

void InboundProbe::StartTlsDiscarded(size_t listener, uint64_t bytes) {
  metrics_->Add(metrics::kStartTlsDiscardedBytes, listener, bytes);
  log::LogEvent("starttls_injection_discarded", log::Level::kWarn)
      .Add("bytes", static_cast<int64_t>(bytes))
      .Emit();
}

void InboundProbe::MessageAccepted(size_t listener) {
  metrics_->Add(metrics::kMessagesAccepted, listener);
}

void InboundProbe::AuthAttempt(std::string_view result) {
  metrics_->Add(metrics::kAuthAttempts, metrics::AuthResultIndex(result));
}

void InboundProbe::SpoolBatch(uint32_t messages) {
  metrics_->Observe(metrics::kSpoolBatchMessages, 0, messages);
}

void InboundProbe::SpoolWriteError() { metrics_->Add(metrics::kSpoolWriteErrors, 0); }

}  // namespace postern::engine
