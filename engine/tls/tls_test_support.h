// Test-only TLS fixtures shared by the engine's TLS tests: a tiny private PKI
// (a CA and leaf certificates built with BoringSSL's X509 calls, written as
// PEM files under TEST_TMPDIR) and an in-memory handshake between a server
// TlsSession and a client TlsSession.
//
// Failures are reported through GoogleTest (EXPECT_*/ASSERT_* in helpers), so
// every function here must run inside a test. Single-threaded. The shared
// certificates (Ca(), Leaf(), ...) are made on first use, once per test
// binary, and live until it exits; their PEM file names are fixed, so a test
// making its own certificate with MakeCert must pick another `file` name.
#ifndef POSTERN_ENGINE_TLS_TLS_TEST_SUPPORT_H_
#define POSTERN_ENGINE_TLS_TLS_TEST_SUPPORT_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/tls/tls_client_context.h"
#include "engine/tls/tls_server_context.h"
#include "engine/tls/tls_session.h"

namespace postern::engine::tls_test {

// $TEST_TMPDIR, or /tmp outside Bazel.
std::string TempDir();

// Lower-case hex SHA-256 of [p, p + n).
std::string Sha256Hex(const uint8_t* p, size_t n);

struct TestCert {
  std::string cert_file;  // PEM
  std::string key_file;   // PEM
  bssl::UniquePtr<X509> x509;
  bssl::UniquePtr<EVP_PKEY> key;

  CertKeyPair pair() const { return {cert_file, key_file}; }
  std::string Der() const;
  std::string DerSha256Hex() const;
  // Re-encoded from the parsed key: independent of any walk through the
  // certificate's DER by the code under test.
  std::string SpkiSha256Hex() const;
};

// A fresh ECDSA P-256 key; null on failure.
bssl::UniquePtr<EVP_PKEY> NewEcdsaP256Key();

struct CertSpec {
  std::string file;                  // base name of the PEM files
  std::string cn;                    // subject CN
  std::string san = "";              // "DNS:a,DNS:b"; empty: no subjectAltName
  const TestCert* issuer = nullptr;  // null: self-signed
  bool ca = false;
  long not_before = -3600;  // seconds from now
  long not_after = 86400;
  bssl::UniquePtr<EVP_PKEY> key = nullptr;  // null: a new ECDSA P-256 key
};

// Signs (SHA-256) and writes <TempDir()>/<file>.crt and .key.
TestCert MakeCert(CertSpec spec);

// "Test CA", and certificates for mx.partner.example: signed by Ca(),
// self-signed, and signed by Ca() but expired a day ago.
const TestCert& Ca();
const TestCert& Leaf();
const TestCert& SelfSigned();
const TestCert& Expired();

// Contexts; null (after a test failure) if Create fails. MakeServer serves
// `cert` alone, replacing options.certificates.
std::unique_ptr<TlsServerContext> MakeServer(const TestCert& cert, TlsServerOptions options = {});
std::unique_ptr<TlsClientContext> MakeClient(TlsClientOptions options = {});
// Verifies against Ca() only.
std::unique_ptr<TlsClientContext> MakeVerifyingClient();

struct Connection {
  std::unique_ptr<TlsSession> server;
  std::unique_ptr<TlsSession> client;
  TlsSession::HandshakeResult server_result = TlsSession::HandshakeResult::kWantIO;
  TlsSession::HandshakeResult client_result = TlsSession::HandshakeResult::kWantIO;
  bool done() const {
    return server_result == TlsSession::HandshakeResult::kDone &&
           client_result == TlsSession::HandshakeResult::kDone;
  }
};

// Moves ciphertext both ways until both sides finish or one fails (its alert
// then reaches the other side). The contexts must outlive the Connection.
Connection Connect(TlsServerContext* server_ctx, TlsClientContext* client_ctx,
                   std::string_view host);

}  // namespace postern::engine::tls_test

#endif  // POSTERN_ENGINE_TLS_TLS_TEST_SUPPORT_H_
