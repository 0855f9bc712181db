// InboundProbe: what inbound connections count, in the worker's shared
// metric region (posternd sums the shards). One place turns session events
// into metric indexes and bounded label values; connections and the server
// call it and know nothing of the metric table.
//
// Threading: the loop thread. Borrows the region, which must outlive it.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_PROBE_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_PROBE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/metric_region.h"
#include "engine/inbound/smtp_server_session.h"

namespace postern::engine {

class InboundProbe {
 public:
  explicit InboundProbe(metrics::MetricRegion* metrics) : metrics_(metrics) {}

  void ConnectionAccepted(size_t listener);
  void ConnectionRefused(size_t listener);
  // A peer outside the listener's proxy_protocol_from was refused.
  void ProxyRefused(size_t listener);
  void ConnectionClosed(size_t listener);
  void BytesReceived(size_t listener, uint64_t bytes);
  void Rejection(std::string_view reason);
  void Commands(const std::array<uint64_t, kCommandVerbCount>& counts);
  // failure empty: a successful handshake at `version` with `cipher`; else
  // the library's failure reason (folded into a bounded label set).
  void TlsHandshake(size_t listener, std::string_view version, std::string_view cipher,
                    std::string_view failure);
  void StartTlsDiscarded(size_t listener, uint64_t bytes);
  void MessageAccepted(size_t listener);
  void AuthAttempt(std::string_view result);  // "ok", "failed", "throttled"
  // New messages that shared one group commit.
  void SpoolBatch(uint32_t messages);
  void SpoolWriteError();

 private:
  metrics::MetricRegion* metrics_;
};

// BoringSSL's failure reasons folded into the label set of
// postern_tls_handshakes_total ("eof", "timeout", "protocol_version",
// "no_shared_cipher", "bad_certificate", "other").
std::string TlsFailureClass(std::string_view reason);
// The tls.ciphers class a negotiated suite belongs to: TLS 1.3 suites and
// ECDHE with an AEAD are "strong", ECDHE with CBC "pfs", RSA key exchange
// "compat".
std::string CipherClassOf(std::string_view version, std::string_view cipher);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_PROBE_H_
