// TlsClientContext: the worker's client-side TLS configuration on BoringSSL
// for outbound delivery (STARTTLS to remote MX hosts), shared by every client
// TlsSession of one outbound TLS setting.
//
// Verification never fails a handshake. With verify_peer, BoringSSL checks
// the server's chain against this context's CA store (built once, here)
// during the handshake and records the X509_V_* result in the session
// (TlsSession::peer_verify_result(); a resumed session keeps the result of
// its full handshake). Whether that result, the name or a pin is acceptable
// is decided afterwards by OutboundTlsCheck, so opportunistic delivery and
// testing mode still deliver while logging what enforcement would have said.
// Without verify_peer no CA store is loaded and no chain is checked.
//
// Session resumption: a client session cache keyed by the host name the
// session was created for (the SNI name; sessions to IP literals are not
// cached). Sessions arrive after the handshake (TLS 1.3 tickets come with the
// server's first application data, so TlsSession::ReadPlaintext stores them).
// A TLS 1.3 session is taken out of the cache when offered (tickets are
// single use); the server sends fresh ones. At most session_cache_size hosts;
// when full, an arbitrary entry makes room.
//
// Threading: owned by the worker's loop thread; every method and every
// TlsSession using it run on that thread (the session callback touches the
// cache without a lock). It must outlive every TlsSession created from it.
#ifndef POSTERN_ENGINE_TLS_TLS_CLIENT_CONTEXT_H_
#define POSTERN_ENGINE_TLS_TLS_CLIENT_CONTEXT_H_

#include <openssl/ssl.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tls/tls_server_context.h"

namespace postern::engine {

struct TlsClientOptions {
  TlsVersion min_version = TlsVersion::kTls12;  // the maximum is always TLS 1.3
  CipherClass ciphers = CipherClass::kPfs;      // TLS 1.2 suites offered
  // Check the server's chain during the handshake (never fatal, see above).
  bool verify_peer = false;
  // PEM bundle of trust anchors when verify_peer; empty: the system store.
  std::string ca_file = {};
  size_t session_cache_size = 1024;  // hosts; 0 disables resumption
};

class TlsClientContext {
 public:
  static constexpr char kSystemCaFile[] = "/etc/ssl/certs/ca-certificates.crt";

  // Builds the SSL_CTX and, with verify_peer, the CA store. Errors: NotFound
  // or PermissionDenied for an unreadable CA file, InvalidArgument for one
  // without certificates, Internal for BoringSSL failures.
  static absl::StatusOr<std::unique_ptr<TlsClientContext>> Create(const TlsClientOptions& options);

  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // Borrowed; lives as long as this object.
  SSL_CTX* get() const { return ctx_.get(); }
  const TlsClientOptions& options() const { return options_; }
  bool verifies_peer() const { return options_.verify_peer; }
  // Trust anchors loaded (0 without verify_peer).
  size_t ca_count() const { return ca_count_; }

  // For TlsSession's client constructor: sets SNI to `host` (unless it is
  // empty or an IP literal) and offers the cached session for it, if any.
  void PrepareSsl(SSL* ssl, std::string_view host);

  size_t cached_sessions() const { return sessions_.size(); }

  // True if `host` is an IPv4 or IPv6 literal (optionally in brackets).
  static bool IsIpLiteral(std::string_view host);

 private:
  explicit TlsClientContext(const TlsClientOptions& options);
  absl::Status Init();
  absl::Status LoadCaStore();

  static int OnNewSession(SSL* ssl, SSL_SESSION* session);

  TlsClientOptions options_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  size_t ca_count_ = 0;
  std::map<std::string, bssl::UniquePtr<SSL_SESSION>, std::less<>> sessions_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_TLS_TLS_CLIENT_CONTEXT_H_
