// EnsureDefaultCertificate: the self-signed certificates the SMTP listeners
// use when the configuration names none. posternd calls it while preparing the
// data dir, before any worker starts; workers only load the files.
//
// Files, in <data_dir>/certs (mode 0700):
//   default-ecdsa.crt / .key   ECDSA P-256, served to every client that can
//                              use it (the cheap handshake)
//   default-rsa.crt / .key     RSA-2048, for legacy peers only
// Keys are PEM PKCS#8, mode 0600 from creation on; certificates PEM, 0644.
//
// A pair is reused when both files parse, the key matches the certificate and
// is of the expected type, the certificate names `hostname`, and it is valid
// for at least 30 more days. Otherwise both files of that pair are generated
// anew: X.509 v3, SHA-256 signature, random 128-bit serial, valid from an hour
// ago for 825 days, subject and issuer CN=hostname, subjectAltName
// DNS:hostname, basicConstraints CA:FALSE, keyUsage digitalSignature (plus
// keyEncipherment for RSA, which RSA key exchange needs), extendedKeyUsage
// serverAuth and clientAuth. A reused key file with another mode is chmod-ed
// to 0600.
//
// Each file is replaced atomically (temporary file, fsync, rename, fsync of
// the directory), so a crash leaves the old file or the new one. A crash
// between a pair's two renames leaves a key that does not match its
// certificate, which the next call regenerates.
//
// Threading: call from one thread; two processes must not run it on the same
// data dir at once.
#ifndef POSTERN_CONTROL_DEFAULT_CERTIFICATE_H_
#define POSTERN_CONTROL_DEFAULT_CERTIFICATE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace postern::control {

struct CertificatePaths {
  // (cert_file, key_file): ECDSA first, then RSA.
  std::vector<std::pair<std::string, std::string>> pairs;
};

// `hostname`: 1 to 253 characters of letters, digits, '-', '_' and '.'
// (InvalidArgument otherwise). Errors from the file system or OpenSSL come
// back as Internal / PermissionDenied with the path.
absl::StatusOr<CertificatePaths> EnsureDefaultCertificate(const std::string& data_dir,
                                                          const std::string& hostname);

}  // namespace postern::control

#endif  // POSTERN_CONTROL_DEFAULT_CERTIFICATE_H_
