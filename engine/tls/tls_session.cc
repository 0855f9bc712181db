#include "engine/tls/tls_session.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/sha.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/tls/tls_client_context.h"

namespace postern::engine {
namespace {

// Largest plaintext one TLS record carries; SSL_read never returns more.
constexpr size_t kReadChunk = 16384;

constexpr char kPeerClosedMessage[] = "TLS peer sent close_notify";

std::string Sha256Hex(const uint8_t* data, size_t len) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(data, len, digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * sizeof(digest));
  for (uint8_t b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xf]);
  }
  return hex;
}

// The DER SubjectPublicKeyInfo inside a DER certificate, found by walking
// the TBSCertificate fields that precede it (RFC 5280 4.1).
bool FindSpki(const uint8_t* der, size_t len, CBS* spki) {
  CBS input, cert, tbs;
  CBS_init(&input, der, len);
  return CBS_get_asn1(&input, &cert, CBS_ASN1_SEQUENCE) &&
         CBS_get_asn1(&cert, &tbs, CBS_ASN1_SEQUENCE) &&
         CBS_get_optional_asn1(&tbs, nullptr, nullptr,
                               CBS_ASN1_CONSTRUCTED | CBS_ASN1_CONTEXT_SPECIFIC | 0) &&
         CBS_get_asn1(&tbs, nullptr, CBS_ASN1_INTEGER) &&   // serialNumber
         CBS_get_asn1(&tbs, nullptr, CBS_ASN1_SEQUENCE) &&  // signature
         CBS_get_asn1(&tbs, nullptr, CBS_ASN1_SEQUENCE) &&  // issuer
         CBS_get_asn1(&tbs, nullptr, CBS_ASN1_SEQUENCE) &&  // validity
         CBS_get_asn1(&tbs, nullptr, CBS_ASN1_SEQUENCE) &&  // subject
         CBS_get_asn1_element(&tbs, spki, CBS_ASN1_SEQUENCE);
}

}  // namespace

TlsSession::TlsSession(TlsServerContext* context) { Init(context->get(), /*client=*/false); }

TlsSession::TlsSession(TlsClientContext* context, std::string_view host) {
  Init(context->get(), /*client=*/true);
  if (!ssl_) return;
  verifies_peer_ = context->verifies_peer();
  context->PrepareSsl(ssl_.get(), host);
}

void TlsSession::Init(SSL_CTX* ctx, bool client) {
  ssl_.reset(SSL_new(ctx));
  if (ssl_) {
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
  }
  if (!ssl_ || rbio_ == nullptr || wbio_ == nullptr) {
    if (rbio_ != nullptr) BIO_free(rbio_);
    if (wbio_ != nullptr) BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    ssl_.reset();
    state_ = State::kFailed;
    failure_reason_ = "internal error";
    ERR_clear_error();
    return;
  }
  // An empty read BIO means "no data yet", not EOF, until FeedEof().
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_.get(), rbio_, wbio_);  // takes both
  if (client) {
    SSL_set_connect_state(ssl_.get());
  } else {
    SSL_set_accept_state(ssl_.get());
  }
}

TlsSession::~TlsSession() = default;

void TlsSession::FeedCiphertext(std::string_view bytes) {
  if (rbio_ == nullptr || eof_) return;
  while (!bytes.empty()) {
    int n = static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX));
    int written = BIO_write(rbio_, bytes.data(), n);
    if (written <= 0) break;  // out of memory: the handshake or read fails
    bytes.remove_prefix(static_cast<size_t>(written));
  }
}

void TlsSession::FeedEof() {
  if (rbio_ == nullptr) return;
  eof_ = true;
  BIO_set_mem_eof_return(rbio_, 0);
}

bool TlsSession::HandleError(int ret) {
  int err = SSL_get_error(ssl_.get(), ret);
  std::string reason;
  switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      if (!eof_) return false;
      reason = "unexpected eof";
      break;
    case SSL_ERROR_SYSCALL:
      // The memory BIOs fail only at EOF.
      reason = "unexpected eof";
      break;
    case SSL_ERROR_ZERO_RETURN:
      reason = "close notify";
      break;
    case SSL_ERROR_SSL: {
      uint32_t code = ERR_get_error();
      const char* text = code != 0 ? ERR_reason_error_string(code) : nullptr;
      reason = text != nullptr ? text : "ssl error";
      break;
    }
    default:
      reason = SSL_error_description(err) != nullptr ? SSL_error_description(err) : "ssl error";
      break;
  }
  ERR_clear_error();
  std::replace(reason.begin(), reason.end(), '_', ' ');
  absl::AsciiStrToLower(&reason);
  failure_reason_ = std::move(reason);
  state_ = State::kFailed;
  return true;
}

TlsSession::HandshakeResult TlsSession::DoHandshake() {
  switch (state_) {
    case State::kEstablished:
      return HandshakeResult::kDone;
    case State::kFailed:
      return HandshakeResult::kFailed;
    case State::kHandshake:
      break;
  }
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_.get());
  if (ret == 1) {
    state_ = State::kEstablished;
    return HandshakeResult::kDone;
  }
  return HandleError(ret) ? HandshakeResult::kFailed : HandshakeResult::kWantIO;
}

absl::StatusOr<size_t> TlsSession::ReadPlaintext(std::string* out) {
  if (state_ == State::kFailed) return absl::AbortedError(failure_reason_);
  if (state_ != State::kEstablished) {
    return absl::FailedPreconditionError("TLS handshake not done");
  }
  if (peer_closed_) return absl::OutOfRangeError(kPeerClosedMessage);
  size_t total = 0;
  char buf[kReadChunk];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl_.get(), buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
      continue;
    }
    if (SSL_get_error(ssl_.get(), n) == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      peer_closed_ = true;
      if (total > 0) return total;
      return absl::OutOfRangeError(kPeerClosedMessage);
    }
    if (!HandleError(n)) return total;
    // Plaintext authenticated before the error is delivered first; the
    // error comes with the next call.
    if (total > 0) return total;
    return absl::AbortedError(failure_reason_);
  }
}

bool TlsSession::version_mismatch() const {
  // Our side found no common version, or the peer said so with an alert.
  return failure_reason_ == "unsupported protocol" ||
         failure_reason_ == "tlsv1 alert protocol version";
}

bool TlsSession::IsPeerClosed(const absl::Status& status) {
  return absl::IsOutOfRange(status) && status.message() == kPeerClosedMessage;
}

absl::Status TlsSession::WritePlaintext(std::string_view data) {
  if (state_ == State::kFailed) return absl::AbortedError(failure_reason_);
  if (state_ != State::kEstablished) {
    return absl::FailedPreconditionError("TLS handshake not done");
  }
  if (shutdown_sent_) return absl::FailedPreconditionError("TLS session shut down");
  while (!data.empty()) {
    int n = static_cast<int>(std::min<size_t>(data.size(), INT_MAX));
    ERR_clear_error();
    int written = SSL_write(ssl_.get(), data.data(), n);
    if (written <= 0) {
      if (!HandleError(written)) {  // a memory BIO never asks to retry a write
        state_ = State::kFailed;
        failure_reason_ = "internal error";
      }
      return absl::AbortedError(failure_reason_);
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

void TlsSession::TakeCiphertext(std::string* out) {
  if (wbio_ == nullptr) return;
  size_t pending = BIO_pending(wbio_);
  if (pending == 0) return;
  size_t old = out->size();
  out->resize(old + pending);
  int n = BIO_read(wbio_, out->data() + old, static_cast<int>(std::min<size_t>(pending, INT_MAX)));
  out->resize(old + static_cast<size_t>(std::max(n, 0)));
}

bool TlsSession::HasCiphertext() const { return wbio_ != nullptr && BIO_pending(wbio_) > 0; }

void TlsSession::Shutdown() {
  if (state_ != State::kEstablished || shutdown_sent_) return;
  shutdown_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // 0: close_notify queued, the peer's not yet seen
  ERR_clear_error();
}

std::string TlsSession::version() const {
  if (!handshake_done()) return "";
  return SSL_get_version(ssl_.get());
}

std::string TlsSession::cipher() const {
  const SSL_CIPHER* c = handshake_done() ? SSL_get_current_cipher(ssl_.get()) : nullptr;
  if (c == nullptr) return "";
  return SSL_CIPHER_standard_name(c);
}

int TlsSession::cipher_bits() const {
  const SSL_CIPHER* c = handshake_done() ? SSL_get_current_cipher(ssl_.get()) : nullptr;
  return c == nullptr ? 0 : SSL_CIPHER_get_bits(c, nullptr);
}

int TlsSession::cipher_alg_bits() const {
  const SSL_CIPHER* c = handshake_done() ? SSL_get_current_cipher(ssl_.get()) : nullptr;
  int alg_bits = 0;
  if (c != nullptr) SSL_CIPHER_get_bits(c, &alg_bits);
  return alg_bits;
}

bool TlsSession::resumed() const { return handshake_done() && SSL_session_reused(ssl_.get()); }

std::string TlsSession::server_name() const {
  const char* name = ssl_ ? SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name) : nullptr;
  return name != nullptr ? name : "";
}

std::optional<PeerCertificate> TlsSession::peer_certificate() const {
  if (!handshake_done()) return std::nullopt;
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl_.get());
  if (chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) return std::nullopt;
  const CRYPTO_BUFFER* leaf = sk_CRYPTO_BUFFER_value(chain, 0);
  const uint8_t* der = CRYPTO_BUFFER_data(leaf);
  size_t len = CRYPTO_BUFFER_len(leaf);
  PeerCertificate cert;
  cert.sha256_cert_hex = Sha256Hex(der, len);
  // BoringSSL parsed the key out of this certificate during the handshake,
  // so the walk succeeds for any certificate that got this far.
  CBS spki;
  if (FindSpki(der, len, &spki)) {
    cert.sha256_spki_hex = Sha256Hex(CBS_data(&spki), CBS_len(&spki));
  }
  return cert;
}

std::vector<std::string> TlsSession::peer_chain() const {
  std::vector<std::string> out;
  if (!handshake_done()) return out;
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(ssl_.get());
  if (chain == nullptr) return out;
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(chain); ++i) {
    const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(chain, i);
    out.emplace_back(reinterpret_cast<const char*>(CRYPTO_BUFFER_data(b)), CRYPTO_BUFFER_len(b));
  }
  return out;
}

std::optional<int> TlsSession::peer_verify_result() const {
  if (!handshake_done() || !verifies_peer_) return std::nullopt;
  return static_cast<int>(SSL_get_verify_result(ssl_.get()));
}

}  // namespace postern::engine
