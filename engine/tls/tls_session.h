// TlsSession: one TLS connection, run entirely in memory: the server side of
// inbound SMTP, or the client side of outbound STARTTLS (TlsClientContext).
//
// The worker's io_uring loop moves the bytes; this class only transforms
// them. Ciphertext received from the socket goes in with FeedCiphertext();
// ciphertext to send comes out with TakeCiphertext(). After EVERY call
// (DoHandshake, ReadPlaintext, WritePlaintext, Shutdown) the caller must
// TakeCiphertext() and send what it gets: handshake flights, session tickets,
// alerts (including the one explaining a failed handshake) and close_notify
// all come out that way. BoringSSL holds TLS 1.3 session tickets back until
// the server's first WritePlaintext() (SMTP always answers soon: the 220
// greeting on implicit TLS, the EHLO reply after STARTTLS), so they share its
// packet. Nothing here blocks or does I/O; input is buffered
// without bound, so the caller limits how much it feeds (it already bounds
// SMTP lines and messages).
//
// Typical use:
//   session.FeedCiphertext(bytes_from_socket);
//   if (!session.handshake_done()) {
//     switch (session.DoHandshake()) { ... kFailed: log failure_reason() }
//   } else {
//     auto n = session.ReadPlaintext(&smtp_input);   // IsPeerClosed(status)
//   }
//   session.TakeCiphertext(&send_queue);
//
// A client sends nothing until the first DoHandshake(), which produces the
// ClientHello.
//
// Lifetime and threading: borrows the TlsServerContext or TlsClientContext,
// which must outlive it; one connection, on the worker's loop thread. Not
// copyable or movable.
#ifndef POSTERN_ENGINE_TLS_TLS_SESSION_H_
#define POSTERN_ENGINE_TLS_TLS_SESSION_H_

#include <openssl/ssl.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tls/tls_server_context.h"

namespace postern::engine {

class TlsClientContext;

// The peer's leaf certificate, as pins are written (lowercase hex SHA-256).
struct PeerCertificate {
  std::string sha256_cert_hex;  // over the DER certificate
  std::string sha256_spki_hex;  // over the DER SubjectPublicKeyInfo
};

class TlsSession {
 public:
  enum class HandshakeResult {
    kDone,    // established; info accessors are valid
    kWantIO,  // send TakeCiphertext(), feed more ciphertext, call again
    kFailed,  // see failure_reason(); send TakeCiphertext() (the alert), close
  };

  explicit TlsSession(TlsServerContext* context);
  // Client side: `host` is the server's name, sent as SNI (not for an IP
  // literal) and the key of the context's session cache.
  TlsSession(TlsClientContext* context, std::string_view host);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Bytes received from the socket, in order. Copied.
  void FeedCiphertext(std::string_view bytes);
  // The socket reached EOF. A handshake then fails with "unexpected eof";
  // ReadPlaintext reports truncation unless close_notify came first.
  void FeedEof();

  // Advances the handshake as far as the fed bytes allow. Idempotent once
  // kDone or kFailed.
  HandshakeResult DoHandshake();
  bool handshake_done() const { return state_ == State::kEstablished; }

  // Why the handshake or the connection failed: BoringSSL's reason, lowercase
  // with spaces ("no shared cipher", "wrong version number",
  // "unsupported protocol", "tlsv1 alert protocol version", "unexpected eof").
  // From a fixed set, so usable as a metric label. Empty while all is well.
  const std::string& failure_reason() const { return failure_reason_; }
  // The handshake failed because the peers share no protocol version (ours
  // or the peer's minimum is above the other's maximum).
  bool version_mismatch() const;

  // Appends all plaintext that the fed ciphertext yields; returns how much
  // (0: none yet). Errors:
  //   IsPeerClosed(status): the peer sent close_notify (plaintext before it
  //     has been returned by earlier calls);
  //   FailedPrecondition: handshake not done;
  //   Aborted: fatal TLS error, alert, or EOF without close_notify
  //     (failure_reason() has it).
  absl::StatusOr<size_t> ReadPlaintext(std::string* out);
  static bool IsPeerClosed(const absl::Status& status);

  // Encrypts all of `data` (no partial writes). FailedPrecondition before the
  // handshake or after Shutdown; Aborted after a fatal error.
  absl::Status WritePlaintext(std::string_view data);

  // Appends the ciphertext waiting to be sent.
  void TakeCiphertext(std::string* out);
  bool HasCiphertext() const;

  // Queues close_notify (once). No further writes; reads still work.
  void Shutdown();

  // Valid once handshake_done().
  std::string version() const;  // "TLSv1.3", "TLSv1.2"
  std::string cipher() const;   // RFC name, "TLS_AES_256_GCM_SHA384"
  int cipher_bits() const;      // effective strength in bits
  int cipher_alg_bits() const;  // the cipher's key size in bits
  bool resumed() const;
  // The name the client sent as SNI ("" if none): on a server, valid once
  // the ClientHello was read; on a client, the name it sends.
  std::string server_name() const;
  // The peer's leaf: on a server the client's certificate, if it sent one
  // (only when the context requests them); on a client the server's. On
  // resumption, the one from the original session.
  std::optional<PeerCertificate> peer_certificate() const;
  // The peer's chain as sent, DER, leaf first (empty if none).
  std::vector<std::string> peer_chain() const;
  // Client sessions of a verifying context: the X509_V_* result of checking
  // the server's chain against the context's CA store (X509_V_OK is 0); on
  // resumption, the original handshake's. nullopt otherwise.
  std::optional<int> peer_verify_result() const;

 private:
  enum class State { kHandshake, kEstablished, kFailed };

  // Records the reason for an SSL_* call that returned `ret`; returns true if
  // the error is fatal (not just "need more input").
  bool HandleError(int ret);
  // Memory BIOs and the SSL; `client` picks the connect state.
  void Init(SSL_CTX* ctx, bool client);

  bssl::UniquePtr<SSL> ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_: ciphertext in
  BIO* wbio_ = nullptr;  // owned by ssl_: ciphertext out
  State state_ = State::kHandshake;
  bool eof_ = false;
  bool shutdown_sent_ = false;
  bool peer_closed_ = false;
  bool verifies_peer_ = false;  // client of a verifying context
  std::string failure_reason_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_TLS_TLS_SESSION_H_
