// TlsServerContext: the worker's server-side TLS configuration on BoringSSL
// (certificates, protocol versions, cipher class, client certificate request,
// session ticket keys), shared by every TlsSession of one listener setting.
//
// Certificates: at most one ECDSA and one RSA pair (PEM; the certificate file
// may carry the chain after the leaf). With both, each handshake is given the
// ECDSA pair when the client can use it (TLS 1.3 with the curve's ECDSA
// signature algorithm, or TLS 1.2 offering an ECDHE-ECDSA suite of the class
// plus an ECDSA signature algorithm and the curve), otherwise the RSA pair:
// an RSA-2048 handshake costs the server more CPU than an ECDSA one, so it
// is for legacy peers only. BoringSSL of this vintage holds one certificate
// per SSL_CTX, hence the selection callback.
//
// Client certificates (request_client_cert): requested, never required, and
// any chain is accepted here; the caller decides by pin (TlsSession's
// peer_certificate() fingerprints).
//
// Session resumption: stateless tickets only (no server-side session cache),
// sealed with AES-256-GCM under a key this object owns. RotateTicketKeys()
// makes a new key current and keeps the one before it for decrypting, so a
// ticket stays usable for one to two rotation intervals; the worker calls it
// every kTicketKeyRotationInterval. Tickets are valid only on the context
// (worker) that issued them unless the same key material is installed on each
// (RotateTicketKeys(material)).
//
// Threading: owned by the worker's loop thread; every method and every
// TlsSession using it run on that thread (the ticket callbacks read the keys
// without a lock). It must outlive every TlsSession created from it.
#ifndef POSTERN_ENGINE_TLS_TLS_SERVER_CONTEXT_H_
#define POSTERN_ENGINE_TLS_TLS_SERVER_CONTEXT_H_

#include <openssl/aead.h>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::engine {

struct CertKeyPair {
  std::string cert_file;  // PEM: leaf first, then any intermediates
  std::string key_file;   // PEM: PKCS#8, SEC1 (EC) or PKCS#1 (RSA)
};

enum class TlsVersion { kTls12, kTls13 };

// TLS 1.2 suites offered. TLS 1.3 suites are fixed by BoringSSL (all AEAD
// with forward secrecy) and are the same for every class.
enum class CipherClass {
  kPfs,     // ECDHE only: AES-GCM, CHACHA20-POLY1305, then AES-CBC (SHA-1 MAC)
  kStrong,  // ECDHE + AEAD only: AES-GCM, CHACHA20-POLY1305
  kCompat,  // kPfs, then RSA key exchange AES-GCM and AES-CBC for legacy senders
};

// The TLS 1.2 suites of class `c` as a BoringSSL cipher string, in preference
// order; both TlsServerContext and TlsClientContext use it, so the two sides
// offer the same sets. Brackets are equal-preference groups: only a server
// applies them (the client's order wins within one), while a client offers the
// suites in the order written.
std::string TlsCipherList(CipherClass c);

// The whole of a PEM file (certificates, a key, a CA bundle) that a context
// loads; a file over `max_bytes` is a configuration mistake. Errors: NotFound,
// PermissionDenied, InvalidArgument (too large), Internal (other I/O errors).
absl::StatusOr<std::string> ReadTlsFile(const std::string& path, size_t max_bytes);

struct TlsServerOptions {
  std::vector<CertKeyPair> certificates = {};   // at least one; <= 1 ECDSA, <= 1 RSA
  TlsVersion min_version = TlsVersion::kTls12;  // the maximum is always TLS 1.3
  CipherClass ciphers = CipherClass::kPfs;
  bool request_client_cert = false;
};

class TlsServerContext {
 public:
  // How often the worker should call RotateTicketKeys(). Session lifetimes are
  // set to twice this, so a client is never told a ticket lives longer than
  // its key can.
  static constexpr std::chrono::seconds kTicketKeyRotationInterval{3600};
  // RotateTicketKeys(material): 16 bytes key name, then 32 bytes AES key.
  static constexpr size_t kTicketKeyMaterialSize = 48;

  // Loads and checks the certificates (parse, key matches leaf, key type) and
  // builds the SSL_CTX. Errors: InvalidArgument for unusable options or
  // files, NotFound for a missing file, Internal for BoringSSL failures.
  static absl::StatusOr<std::unique_ptr<TlsServerContext>> Create(const TlsServerOptions& options);

  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // Borrowed; lives as long as this object.
  SSL_CTX* get() const { return ctx_.get(); }

  // New random ticket key; the current one is kept for decryption only and
  // the one before it is dropped (its tickets fall back to a full handshake).
  void RotateTicketKeys();
  // Same with given key material (kTicketKeyMaterialSize bytes), so several
  // workers or nodes can share keys. InvalidArgument on a wrong size.
  absl::Status RotateTicketKeys(std::string_view material);

  const TlsServerOptions& options() const { return options_; }

 private:
  struct Credential {
    bssl::UniquePtr<EVP_PKEY> key;
    std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain;  // leaf first
    std::vector<CRYPTO_BUFFER*> chain_ptrs;             // views of chain
    int ec_curve_nid = 0;                               // ECDSA only
  };
  struct TicketKey {
    std::array<uint8_t, 16> name{};
    bssl::ScopedEVP_AEAD_CTX aead;
  };

  explicit TlsServerContext(const TlsServerOptions& options);
  absl::Status Init();
  static absl::StatusOr<Credential> LoadCredential(const CertKeyPair& pair);
  absl::Status InstallTicketKey(const uint8_t* material);

  // BoringSSL callbacks; the context is found through SSL_CTX app data.
  static TlsServerContext* FromSsl(const SSL* ssl);
  static enum ssl_select_cert_result_t SelectCertificate(const SSL_CLIENT_HELLO* hello);
  static enum ssl_verify_result_t AcceptAnyPeerCertificate(SSL* ssl, uint8_t* out_alert);
  static size_t TicketMaxOverhead(SSL* ssl);
  static int TicketSeal(SSL* ssl, uint8_t* out, size_t* out_len, size_t max_out_len,
                        const uint8_t* in, size_t in_len);
  static enum ssl_ticket_aead_result_t TicketOpen(SSL* ssl, uint8_t* out, size_t* out_len,
                                                  size_t max_out_len, const uint8_t* in,
                                                  size_t in_len);
  bool ClientCanUseEcdsa(const SSL_CLIENT_HELLO* hello) const;

  TlsServerOptions options_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  std::optional<Credential> ecdsa_;
  std::optional<Credential> rsa_;
  std::unique_ptr<TicketKey> current_ticket_key_;
  std::unique_ptr<TicketKey> previous_ticket_key_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_TLS_TLS_SERVER_CONTEXT_H_
