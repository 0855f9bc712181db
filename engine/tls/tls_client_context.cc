#include "engine/tls/tls_client_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace postern::engine {
namespace {

// The system bundle is about 200 KiB; anything far larger is a mistake.
constexpr size_t kMaxCaFileSize = 16u << 20;

// Cache key and SNI form of a host name: lowercase, no trailing dot.
std::string NormalizeHost(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  absl::AsciiStrToLower(&out);
  return out;
}

}  // namespace

TlsClientContext::TlsClientContext(const TlsClientOptions& options) : options_(options) {}

TlsClientContext::~TlsClientContext() = default;

absl::StatusOr<std::unique_ptr<TlsClientContext>> TlsClientContext::Create(
    const TlsClientOptions& options) {
  std::unique_ptr<TlsClientContext> context(new TlsClientContext(options));
  absl::Status s = context->Init();
  if (!s.ok()) return s;
  return context;
}

bool TlsClientContext::IsIpLiteral(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string h(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

absl::Status TlsClientContext::LoadCaStore() {
  const std::string& path =
      options_.ca_file.empty() ? std::string(kSystemCaFile) : options_.ca_file;
  absl::StatusOr<std::string> pem = ReadTlsFile(path, kMaxCaFileSize);
  if (!pem.ok()) return pem.status();
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem->data(), pem->size()));
  if (!bio) return absl::InternalError("BIO_new_mem_buf failed");
  X509_STORE* store = SSL_CTX_get_cert_store(ctx_.get());  // owned by ctx_
  ERR_clear_error();
  for (;;) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) {
      // PEM_read_bio_X509 skips blocks of other types, so "no start line"
      // is the end of input; anything else is a damaged certificate block.
      uint32_t err = ERR_peek_last_error();
      ERR_clear_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) break;
      if (err == 0) break;
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": unreadable certificate after ", ca_count_, " good ones"));
    }
    if (!X509_STORE_add_cert(store, cert.get())) {  // duplicates are accepted
      ERR_clear_error();
      return absl::InternalError(absl::StrCat(path, ": X509_STORE_add_cert failed"));
    }
    ++ca_count_;
  }
  if (ca_count_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no PEM CERTIFICATE block found"));
  }
  return absl::OkStatus();
}

absl::Status TlsClientContext::Init() {
  ctx_.reset(SSL_CTX_new(TLS_method()));
  if (!ctx_) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_app_data(ctx_.get(), this);
  uint16_t min = options_.min_version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!SSL_CTX_set_min_proto_version(ctx_.get(), min) ||
      !SSL_CTX_set_max_proto_version(ctx_.get(), TLS1_3_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx_.get(), TlsCipherList(options_.ciphers).c_str())) {
    ERR_clear_error();
    return absl::InternalError("cannot configure the client SSL_CTX");
  }
  // SSL_VERIFY_NONE: BoringSSL still runs X509_verify_cert against the
  // context's store and keeps the result in the session, but goes on.
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
  if (options_.verify_peer) {
    absl::Status s = LoadCaStore();
    if (!s.ok()) return s;
  } else {
    // Nothing will look at a verdict, so skip building chains at all.
    SSL_CTX_set_custom_verify(ctx_.get(), SSL_VERIFY_NONE,
                              [](SSL*, uint8_t*) { return ssl_verify_ok; });
  }
  if (options_.session_cache_size > 0) {
    // Client mode with no internal cache: this object keys sessions by host.
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx_.get(), &TlsClientContext::OnNewSession);
  } else {
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_OFF);
  }
  return absl::OkStatus();
}

void TlsClientContext::PrepareSsl(SSL* ssl, std::string_view host) {
  if (host.empty() || IsIpLiteral(host)) return;  // RFC 6066: no SNI for literals
  std::string name = NormalizeHost(host);
  if (!SSL_set_tlsext_host_name(ssl, name.c_str())) {
    ERR_clear_error();  // out of memory: the handshake goes on without SNI
    return;
  }
  auto it = sessions_.find(name);
  if (it == sessions_.end()) return;
  SSL_set_session(ssl, it->second.get());  // takes its own reference
  if (SSL_SESSION_should_be_single_use(it->second.get())) sessions_.erase(it);
}

int TlsClientContext::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsClientContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  // On a client, SSL_get_servername returns the SNI name PrepareSsl set.
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (self == nullptr || host == nullptr) return 0;  // not kept: BoringSSL frees it
  auto it = self->sessions_.find(std::string_view(host));
  if (it != self->sessions_.end()) {
    it->second.reset(session);
    return 1;
  }
  if (self->sessions_.size() >= self->options_.session_cache_size) {
    self->sessions_.erase(self->sessions_.begin());
  }
  self->sessions_.emplace(host, bssl::UniquePtr<SSL_SESSION>(session));
  return 1;  // we keep the reference
}

}  // namespace postern::engine
