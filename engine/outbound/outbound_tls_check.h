// OutboundTlsCheck: decides whether the TLS an outbound delivery attempt got
// satisfies the destination's outbound TLS mode (docs/CONFIG.md, partners),
// and if not, names the failure with its RFC 8460 (TLSRPT) result type.
//
// Pure: it looks only at OutboundTlsFacts (what the session established,
// gathered by FromSession) and its own requirements; no I/O, no clock. Chain
// validity (trust, expiry) is judged by BoringSSL during the handshake
// against the TlsClientContext's CA store, so a verify policy needs a session
// from a context created with verify_peer.
//
// Per mode:
//   none, opportunistic: always ok (the diagnostic says what happened; after
//     a failed handshake, opportunistic delivery retries in plaintext).
//   require: ok once TLS is up at min_version or above.
//   verify:  require + chain trusted + a certificate name matches one of
//     `match` (default: the MX host name and the recipient domain).
//   pin:     require + the leaf's certificate or SPKI SHA-256 equals a pin;
//     no CA and no names involved.
// Failures of the enforced modes, in the order checked: STARTTLS not offered,
// the handshake failed (protocol-version-too-low on a version mismatch,
// validation-failure otherwise), version below min_version, then the mode's
// own check. Testing policies evaluate their real mode on an opportunistic
// session and only log the verdict.
//
// Name matching (RFC 6125): subjectAltName dNSName entries only; the subject
// CN only when the certificate has no dNSName at all. ASCII case-insensitive,
// a trailing dot ignored. A wildcard only as the whole left-most label
// ("*.partner.example"), matching exactly one label, never over a single
// remaining label ("*.example"), never for an IP-literal reference name.
//
// Thread-compatible; immutable after Create.
#ifndef POSTERN_ENGINE_OUTBOUND_OUTBOUND_TLS_CHECK_H_
#define POSTERN_ENGINE_OUTBOUND_OUTBOUND_TLS_CHECK_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tls/tls_session.h"
#include "proto/config.pb.h"

namespace postern::engine {

// RFC 8460 section 4.3 result types.
inline constexpr char kTlsrptStarttlsNotSupported[] = "starttls-not-supported";
inline constexpr char kTlsrptCertificateHostMismatch[] = "certificate-host-mismatch";
inline constexpr char kTlsrptCertificateExpired[] = "certificate-expired";
inline constexpr char kTlsrptCertificateNotTrusted[] = "certificate-not-trusted";
inline constexpr char kTlsrptValidationFailure[] = "validation-failure";
// Not RFC 8460 types: Postern's own names for pin and version failures (a
// TLSRPT report would file both under validation-failure).
inline constexpr char kTlsrptPinMismatch[] = "pin-mismatch";
inline constexpr char kTlsrptProtocolVersionTooLow[] = "protocol-version-too-low";

// What one delivery attempt saw. FromSession fills everything but
// starttls_offered; tests may build one by hand.
struct OutboundTlsFacts {
  // False when the server did not offer STARTTLS or refused the command.
  bool starttls_offered = true;
  bool established = false;
  bool version_mismatch = false;    // the handshake failed on protocol version
  std::string failure_reason = {};  // the handshake's, when it failed
  std::string version = {};         // "TLSv1.3"
  std::string cipher = {};          // "TLS_AES_128_GCM_SHA256"
  // X509_V_* from the handshake; nullopt: the chain was not checked.
  std::optional<int> verify_result = {};
  std::vector<std::string> peer_chain = {};       // DER, leaf first
  std::optional<PeerCertificate> peer_leaf = {};  // fingerprints of peer_chain[0]

  // From a client session after DoHandshake() returned kDone or kFailed.
  static OutboundTlsFacts FromSession(const TlsSession& session);
};

struct OutboundTlsVerdict {
  bool ok = true;
  std::string result_type = {};  // one of kTlsrpt*, when !ok
  std::string diagnostic = {};   // for the delivery log and the DSN, either way
};

struct OutboundTlsRequirements {
  config::v1::OutboundTlsMode mode = config::v1::OUTBOUND_TLS_MODE_OPPORTUNISTIC;
  config::v1::TlsVersion min_version = config::v1::TLS_VERSION_1_2;
  std::vector<std::string> match = {};  // verify; empty: MX host and domain
  std::vector<std::string> pins = {};   // pin; "sha256:<64 hex>"
};

class OutboundTlsCheck {
 public:
  // InvalidArgument for a malformed pin, or pin mode without pins.
  static absl::StatusOr<OutboundTlsCheck> Create(OutboundTlsRequirements requirements);

  // `mx_host`: the name of the MX connected to; `domain`: the recipient
  // domain. Both are the default `match` names.
  OutboundTlsVerdict Evaluate(const OutboundTlsFacts& facts, std::string_view mx_host,
                              std::string_view domain) const;

  const OutboundTlsRequirements& requirements() const { return requirements_; }

  // "sha256:" then 64 hex digits (either case).
  static absl::Status ValidatePin(std::string_view pin);
  // One RFC 6125 comparison; see the header comment.
  static bool NameMatches(std::string_view reference, std::string_view presented);
  // The names a certificate (DER) presents for matching: its dNSNames, or its
  // CNs when it has none. InvalidArgument if it does not parse.
  static absl::StatusOr<std::vector<std::string>> PresentedNames(std::string_view der);
  // The RFC 8460 result type for an X509_V_* error (not X509_V_OK).
  static const char* ResultTypeForVerifyError(int x509_error);

 private:
  explicit OutboundTlsCheck(OutboundTlsRequirements requirements)
      : requirements_(std::move(requirements)) {}

  OutboundTlsVerdict CheckVerify(const OutboundTlsFacts& facts, std::string_view mx_host,
                                 std::string_view domain) const;
  OutboundTlsVerdict CheckPin(const OutboundTlsFacts& facts) const;

  OutboundTlsRequirements requirements_;
  std::vector<std::string> pin_hex_;  // lowercase hex of each pin
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_OUTBOUND_TLS_CHECK_H_
