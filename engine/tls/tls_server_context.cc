#include "engine/tls/tls_server_context.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <string.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace postern::engine {
namespace {

// TLS 1.2 suites per class (TlsCipherList), in preference order. Brackets are
// BoringSSL's equal-preference groups: within one a server lets the client's
// order win, so a client without AES hardware can pick ChaCha20-Poly1305.
constexpr char kStrongCiphers[] =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384";
constexpr char kPfsCbcCiphers[] =
    "ECDHE-ECDSA-AES128-SHA:"
    "ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA:"
    "ECDHE-RSA-AES256-SHA";
constexpr char kRsaKxCiphers[] =
    "AES128-GCM-SHA256:"
    "AES256-GCM-SHA384:"
    "AES128-SHA:"
    "AES256-SHA";

}  // namespace

std::string TlsCipherList(CipherClass c) {
  switch (c) {
    case CipherClass::kStrong:
      return kStrongCiphers;
    case CipherClass::kPfs:
      return absl::StrCat(kStrongCiphers, ":", kPfsCbcCiphers);
    case CipherClass::kCompat:
      return absl::StrCat(kStrongCiphers, ":", kPfsCbcCiphers, ":", kRsaKxCiphers);
  }
  return kStrongCiphers;
}

absl::StatusOr<std::string> ReadTlsFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    std::string msg = absl::StrCat(path, ": ", strerror(e));
    if (e == ENOENT) return absl::NotFoundError(msg);
    if (e == EACCES || e == EPERM) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return absl::InternalError(absl::StrCat(path, ": ", strerror(e)));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", max_bytes >> 20, " MiB"));
    }
  }
  close(fd);
  return data;
}

namespace {

// The first queued BoringSSL error, for messages; clears the queue.
std::string TakeSslError() {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(err);
  return reason != nullptr ? reason : absl::StrCat("error ", err);
}

// Certificate chains and keys are a few KiB.
constexpr size_t kMaxPemFileSize = 1u << 20;

uint16_t EcdsaSigalgForCurve(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1:
      return SSL_SIGN_ECDSA_SECP256R1_SHA256;
    case NID_secp384r1:
      return SSL_SIGN_ECDSA_SECP384R1_SHA384;
    case NID_secp521r1:
      return SSL_SIGN_ECDSA_SECP521R1_SHA512;
  }
  return 0;
}

uint16_t GroupForCurve(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1:
      return SSL_CURVE_SECP256R1;
    case NID_secp384r1:
      return SSL_CURVE_SECP384R1;
    case NID_secp521r1:
      return SSL_CURVE_SECP521R1;
  }
  return 0;
}

// True if the u16 list in extension `type` (with a `prefix_bytes` length
// prefix) contains `value`. `*present` says whether the extension was sent.
bool ExtensionListHas(const SSL_CLIENT_HELLO* hello, uint16_t type, int prefix_bytes,
                      uint16_t value, bool* present = nullptr) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!SSL_early_callback_ctx_extension_get(hello, type, &data, &len)) {
    if (present != nullptr) *present = false;
    return false;
  }
  if (present != nullptr) *present = true;
  CBS ext, list;
  CBS_init(&ext, data, len);
  int ok = prefix_bytes == 1 ? CBS_get_u8_length_prefixed(&ext, &list)
                             : CBS_get_u16_length_prefixed(&ext, &list);
  if (!ok) return false;
  uint16_t v = 0;
  while (CBS_get_u16(&list, &v)) {
    if (v == value) return true;
  }
  return false;
}

}  // namespace

TlsServerContext::TlsServerContext(const TlsServerOptions& options) : options_(options) {}

TlsServerContext::~TlsServerContext() = default;

absl::StatusOr<std::unique_ptr<TlsServerContext>> TlsServerContext::Create(
    const TlsServerOptions& options) {
  std::unique_ptr<TlsServerContext> context(new TlsServerContext(options));
  absl::Status s = context->Init();
  if (!s.ok()) return s;
  return context;
}

absl::StatusOr<TlsServerContext::Credential> TlsServerContext::LoadCredential(
    const CertKeyPair& pair) {
  absl::StatusOr<std::string> cert_pem = ReadTlsFile(pair.cert_file, kMaxPemFileSize);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadTlsFile(pair.key_file, kMaxPemFileSize);
  if (!key_pem.ok()) return key_pem.status();

  Credential cred;
  ERR_clear_error();
  bssl::UniquePtr<BIO> cert_bio(BIO_new_mem_buf(cert_pem->data(), cert_pem->size()));
  if (!cert_bio) return absl::InternalError("BIO_new_mem_buf failed");
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    uint8_t* der = nullptr;
    long der_len = 0;
    if (!PEM_read_bio(cert_bio.get(), &name, &header, &der, &der_len)) {
      ERR_clear_error();  // end of input (PEM_R_NO_START_LINE)
      break;
    }
    bool is_cert = strcmp(name, "CERTIFICATE") == 0;
    if (is_cert) {
      cred.chain.emplace_back(CRYPTO_BUFFER_new(der, static_cast<size_t>(der_len), nullptr));
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    if (is_cert && !cred.chain.back()) return absl::InternalError("CRYPTO_BUFFER_new failed");
  }
  if (cred.chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(pair.cert_file, ": no PEM CERTIFICATE block found"));
  }
  const uint8_t* p = CRYPTO_BUFFER_data(cred.chain[0].get());
  bssl::UniquePtr<X509> leaf(
      d2i_X509(nullptr, &p, static_cast<long>(CRYPTO_BUFFER_len(cred.chain[0].get()))));
  if (!leaf) {
    return absl::InvalidArgumentError(
        absl::StrCat(pair.cert_file, ": leaf certificate does not parse: ", TakeSslError()));
  }
  for (size_t i = 1; i < cred.chain.size(); ++i) {
    const uint8_t* q = CRYPTO_BUFFER_data(cred.chain[i].get());
    bssl::UniquePtr<X509> c(
        d2i_X509(nullptr, &q, static_cast<long>(CRYPTO_BUFFER_len(cred.chain[i].get()))));
    if (!c) {
      return absl::InvalidArgumentError(absl::StrCat(pair.cert_file, ": chain certificate ", i,
                                                     " does not parse: ", TakeSslError()));
    }
  }

  bssl::UniquePtr<BIO> key_bio(BIO_new_mem_buf(key_pem->data(), key_pem->size()));
  if (!key_bio) return absl::InternalError("BIO_new_mem_buf failed");
  // No password callback: encrypted keys are refused rather than prompted for.
  cred.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!cred.key) {
    return absl::InvalidArgumentError(
        absl::StrCat(pair.key_file, ": no usable unencrypted private key: ", TakeSslError()));
  }
  bssl::UniquePtr<EVP_PKEY> leaf_key(X509_get_pubkey(leaf.get()));
  if (!leaf_key || EVP_PKEY_cmp(leaf_key.get(), cred.key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(pair.key_file, ": private key does not match ", pair.cert_file));
  }
  switch (EVP_PKEY_id(cred.key.get())) {
    case EVP_PKEY_EC: {
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(cred.key.get());
      cred.ec_curve_nid = EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
      if (EcdsaSigalgForCurve(cred.ec_curve_nid) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(pair.key_file, ": ECDSA curve must be P-256, P-384 or P-521"));
      }
      break;
    }
    case EVP_PKEY_RSA:
      if (EVP_PKEY_bits(cred.key.get()) < 2048) {
        return absl::InvalidArgumentError(
            absl::StrCat(pair.key_file, ": RSA keys shorter than 2048 bits are refused"));
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(pair.key_file, ": only ECDSA and RSA keys are supported"));
  }
  for (auto& b : cred.chain) cred.chain_ptrs.push_back(b.get());
  return cred;
}

absl::Status TlsServerContext::Init() {
  if (options_.certificates.empty()) {
    return absl::InvalidArgumentError("TLS needs at least one certificate");
  }
  for (const CertKeyPair& pair : options_.certificates) {
    absl::StatusOr<Credential> cred = LoadCredential(pair);
    if (!cred.ok()) return cred.status();
    std::optional<Credential>& slot = cred->ec_curve_nid != 0 ? ecdsa_ : rsa_;
    if (slot.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(pair.cert_file, ": at most one ECDSA and one RSA certificate can be served",
                       " (no SNI-based selection)"));
    }
    slot = std::move(*cred);
  }

  ERR_clear_error();
  ctx_.reset(SSL_CTX_new(TLS_method()));
  if (!ctx_) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX* ctx = ctx_.get();
  uint16_t min = options_.min_version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!SSL_CTX_set_min_proto_version(ctx, min) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
    return absl::InternalError(absl::StrCat("setting TLS versions: ", TakeSslError()));
  }
  std::string ciphers = TlsCipherList(options_.ciphers);
  if (!SSL_CTX_set_strict_cipher_list(ctx, ciphers.c_str())) {
    return absl::InternalError(absl::StrCat("cipher list: ", TakeSslError()));
  }
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);

  // Tickets only: no server-side cache to grow or share.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  static constexpr uint8_t kSessionIdContext[] = {'p', 'o', 's', 't', 'e', 'r', 'n'};
  SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext));
  uint32_t lifetime = static_cast<uint32_t>(2 * kTicketKeyRotationInterval.count());
  SSL_CTX_set_timeout(ctx, lifetime);
  SSL_CTX_set_session_psk_dhe_timeout(ctx, lifetime);

  SSL_CTX_set_app_data(ctx, this);
  static const SSL_TICKET_AEAD_METHOD kTicketMethod = {
      &TicketMaxOverhead,
      &TicketSeal,
      &TicketOpen,
  };
  SSL_CTX_set_ticket_aead_method(ctx, &kTicketMethod);
  RotateTicketKeys();
  if (current_ticket_key_ == nullptr) return absl::InternalError("ticket key setup failed");

  // The context's own pair is the one used when no selection happens.
  const Credential& first = ecdsa_.has_value() ? *ecdsa_ : *rsa_;
  if (!SSL_CTX_set_chain_and_key(ctx, first.chain_ptrs.data(), first.chain_ptrs.size(),
                                 first.key.get(), nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("certificate: ", TakeSslError()));
  }
  if (ecdsa_.has_value() && rsa_.has_value()) {
    SSL_CTX_set_select_certificate_cb(ctx, &SelectCertificate);
  }
  if (options_.request_client_cert) {
    // SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT: ask, do not require.
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, &AcceptAnyPeerCertificate);
  }
  return absl::OkStatus();
}

TlsServerContext* TlsServerContext::FromSsl(const SSL* ssl) {
  return static_cast<TlsServerContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

bool TlsServerContext::ClientCanUseEcdsa(const SSL_CLIENT_HELLO* hello) const {
  const int nid = ecdsa_->ec_curve_nid;
  // Our maximum is TLS 1.3, so a client offering it gets it.
  bool tls13 = ExtensionListHas(hello, TLSEXT_TYPE_supported_versions, 1, TLS1_3_VERSION);
  if (tls13) {
    // In TLS 1.3 the signature algorithm names the curve.
    return ExtensionListHas(hello, TLSEXT_TYPE_signature_algorithms, 2, EcdsaSigalgForCurve(nid));
  }
  // TLS 1.2: an ECDSA signature algorithm, the key's curve, and a suite.
  bool ecdsa_sigalg = false;
  for (uint16_t alg : {SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_ECDSA_SECP384R1_SHA384,
                       SSL_SIGN_ECDSA_SECP521R1_SHA512}) {
    if (ExtensionListHas(hello, TLSEXT_TYPE_signature_algorithms, 2, alg)) {
      ecdsa_sigalg = true;
      break;
    }
  }
  if (!ecdsa_sigalg) return false;
  bool groups_sent = false;
  bool has_group =
      ExtensionListHas(hello, TLSEXT_TYPE_supported_groups, 2, GroupForCurve(nid), &groups_sent);
  if (groups_sent && !has_group) return false;
  STACK_OF(SSL_CIPHER)* ours = SSL_get_ciphers(hello->ssl);
  CBS suites;
  CBS_init(&suites, hello->cipher_suites, hello->cipher_suites_len);
  uint16_t id = 0;
  while (CBS_get_u16(&suites, &id)) {
    const SSL_CIPHER* c = SSL_get_cipher_by_value(id);
    if (c == nullptr || SSL_CIPHER_get_auth_nid(c) != NID_auth_ecdsa) continue;
    for (size_t i = 0; i < sk_SSL_CIPHER_num(ours); ++i) {
      if (SSL_CIPHER_get_protocol_id(sk_SSL_CIPHER_value(ours, i)) == id) return true;
    }
  }
  return false;
}

enum ssl_select_cert_result_t TlsServerContext::SelectCertificate(const SSL_CLIENT_HELLO* hello) {
  TlsServerContext* self = FromSsl(hello->ssl);
  const Credential& cred = self->ClientCanUseEcdsa(hello) ? *self->ecdsa_ : *self->rsa_;
  if (!SSL_set_chain_and_key(hello->ssl, cred.chain_ptrs.data(), cred.chain_ptrs.size(),
                             cred.key.get(), nullptr)) {
    return ssl_select_cert_error;
  }
  return ssl_select_cert_success;
}

enum ssl_verify_result_t TlsServerContext::AcceptAnyPeerCertificate(SSL* ssl, uint8_t* out_alert) {
  // Trust is decided by the caller from the certificate's fingerprint.
  return ssl_verify_ok;
}

// Ticket format: key name (16) | AES-256-GCM with random nonce (nonce, data,
// tag), the key name as additional data.
size_t TlsServerContext::TicketMaxOverhead(SSL* ssl) {
  return 16 + EVP_AEAD_max_overhead(EVP_aead_aes_256_gcm_randnonce());
}

int TlsServerContext::TicketSeal(SSL* ssl, uint8_t* out, size_t* out_len, size_t max_out_len,
                                 const uint8_t* in, size_t in_len) {
  TlsServerContext* self = FromSsl(ssl);
  const TicketKey* key = self->current_ticket_key_.get();
  if (key == nullptr || max_out_len < key->name.size()) return 0;
  // `in` may equal `out`: move the plaintext clear of the name first.
  uint8_t* body = out + key->name.size();
  size_t sealed_len = 0;
  if (in == out) {
    if (max_out_len - key->name.size() < in_len) return 0;
    memmove(body, in, in_len);
    in = body;
  }
  if (!EVP_AEAD_CTX_seal(key->aead.get(), body, &sealed_len, max_out_len - key->name.size(),
                         nullptr, 0, in, in_len, key->name.data(), key->name.size())) {
    return 0;
  }
  memcpy(out, key->name.data(), key->name.size());
  *out_len = key->name.size() + sealed_len;
  return 1;
}

enum ssl_ticket_aead_result_t TlsServerContext::TicketOpen(SSL* ssl, uint8_t* out, size_t* out_len,
                                                           size_t max_out_len, const uint8_t* in,
                                                           size_t in_len) {
  TlsServerContext* self = FromSsl(ssl);
  if (in_len < 16) return ssl_ticket_aead_ignore_ticket;
  for (const TicketKey* key : {self->current_ticket_key_.get(), self->previous_ticket_key_.get()}) {
    if (key == nullptr || memcmp(in, key->name.data(), key->name.size()) != 0) continue;
    if (!EVP_AEAD_CTX_open(key->aead.get(), out, out_len, max_out_len, nullptr, 0, in + 16,
                           in_len - 16, key->name.data(), key->name.size())) {
      ERR_clear_error();
      return ssl_ticket_aead_ignore_ticket;  // forged or corrupt: full handshake
    }
    return ssl_ticket_aead_success;
  }
  return ssl_ticket_aead_ignore_ticket;  // key rotated away
}

absl::Status TlsServerContext::InstallTicketKey(const uint8_t* material) {
  auto key = std::make_unique<TicketKey>();
  memcpy(key->name.data(), material, key->name.size());
  if (!EVP_AEAD_CTX_init(key->aead.get(), EVP_aead_aes_256_gcm_randnonce(), material + 16, 32,
                         EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr)) {
    return absl::InternalError(absl::StrCat("ticket key: ", TakeSslError()));
  }
  previous_ticket_key_ = std::move(current_ticket_key_);
  current_ticket_key_ = std::move(key);
  return absl::OkStatus();
}

void TlsServerContext::RotateTicketKeys() {
  uint8_t material[kTicketKeyMaterialSize];
  RAND_bytes(material, sizeof(material));  // aborts rather than fail in BoringSSL
  (void)InstallTicketKey(material);        // AES-256-GCM init with a 32-byte key cannot fail
  OPENSSL_cleanse(material, sizeof(material));
}

absl::Status TlsServerContext::RotateTicketKeys(std::string_view material) {
  if (material.size() != kTicketKeyMaterialSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ticket key material must be ", kTicketKeyMaterialSize, " bytes"));
  }
  return InstallTicketKey(reinterpret_cast<const uint8_t*>(material.data()));
}

}  // namespace postern::engine
