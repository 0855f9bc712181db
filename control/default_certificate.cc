#include "control/default_certificate.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace postern::control {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
using BitStringPtr =
    std::unique_ptr<ASN1_BIT_STRING, Deleter<ASN1_BIT_STRING, ASN1_BIT_STRING_free>>;
using BasicConstraintsPtr =
    std::unique_ptr<BASIC_CONSTRAINTS, Deleter<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>>;
using EkuPtr =
    std::unique_ptr<EXTENDED_KEY_USAGE, Deleter<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

constexpr long kValidityDays = 825;
constexpr long kBackdateSeconds = 3600;
constexpr long kRenewBeforeSeconds = 30L * 24 * 3600;

enum class KeyKind { kEcdsaP256, kRsa2048 };

struct PairSpec {
  KeyKind kind;
  const char* stem;  // file name without extension
};
constexpr PairSpec kPairs[] = {
    {KeyKind::kEcdsaP256, "default-ecdsa"},
    {KeyKind::kRsa2048, "default-rsa"},
};

// The first queued OpenSSL error as text; clears the queue.
std::string TakeOpensslError() {
  unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(err, buf, sizeof(buf));
  return buf;
}

absl::Status OpensslError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", TakeOpensslError()));
}

absl::Status ErrnoError(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

bool ValidHostname(const std::string& h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirs(const std::string& path, mode_t mode) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return absl::InternalError(absl::StrCat(path, ": not a directory"));
    return absl::OkStatus();
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    absl::Status s = MakeDirs(path.substr(0, slash), mode);
    if (!s.ok()) return s;
  }
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

// Never prompts on a terminal for a passphrase: an encrypted key just fails.
int NoPassphrase(char* buf, int size, int rwflag, void* userdata) { return -1; }

// Why the pair at (cert_path, key_path) cannot be reused, or OK.
absl::Status CheckExisting(KeyKind kind, const std::string& cert_path, const std::string& key_path,
                           const std::string& hostname) {
  BioPtr cert_bio(BIO_new_file(cert_path.c_str(), "r"));
  BioPtr key_bio(BIO_new_file(key_path.c_str(), "r"));
  if (!cert_bio || !key_bio) {
    ERR_clear_error();
    return absl::NotFoundError("missing");
  }
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, &NoPassphrase, nullptr));
  if (!cert) return absl::DataLossError(absl::StrCat("certificate: ", TakeOpensslError()));
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, &NoPassphrase, nullptr));
  if (!key) return absl::DataLossError(absl::StrCat("key: ", TakeOpensslError()));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::DataLossError("key does not match certificate");
  }
  if (kind == KeyKind::kEcdsaP256) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC ||
        !EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &len) ||
        strcmp(group, SN_X9_62_prime256v1) != 0) {
      ERR_clear_error();
      return absl::DataLossError("not an ECDSA P-256 key");
    }
  } else if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA ||
             EVP_PKEY_get_bits(key.get()) < 2048) {
    return absl::DataLossError("not an RSA key of at least 2048 bits");
  }
  if (X509_check_host(cert.get(), hostname.data(), hostname.size(), 0, nullptr) != 1) {
    return absl::FailedPreconditionError("certificate does not name the hostname");
  }
  time_t renew_at = time(nullptr) + kRenewBeforeSeconds;
  if (X509_cmp_time(X509_get0_notAfter(cert.get()), &renew_at) <= 0) {
    return absl::FailedPreconditionError("certificate expires within 30 days");
  }
  return absl::OkStatus();
}

absl::StatusOr<PkeyPtr> GenerateKey(KeyKind kind) {
  PkeyPtr key(kind == KeyKind::kEcdsaP256 ? EVP_EC_gen(SN_X9_62_prime256v1) : EVP_RSA_gen(2048));
  if (!key) return OpensslError("key generation");
  return key;
}

absl::Status AddExtensions(X509* cert, KeyKind kind, const std::string& hostname) {
  // subjectAltName: DNS:hostname (built directly, so no config-string parsing
  // of the hostname).
  NamesPtr names(GENERAL_NAMES_new());
  GENERAL_NAME* dns = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  if (!names || dns == nullptr || ia5 == nullptr ||
      !ASN1_STRING_set(ia5, hostname.data(), static_cast<int>(hostname.size()))) {
    GENERAL_NAME_free(dns);
    ASN1_IA5STRING_free(ia5);
    return OpensslError("subjectAltName");
  }
  GENERAL_NAME_set0_value(dns, GEN_DNS, ia5);
  if (!sk_GENERAL_NAME_push(names.get(), dns)) {
    GENERAL_NAME_free(dns);
    return OpensslError("subjectAltName");
  }
  if (!X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT)) {
    return OpensslError("subjectAltName");
  }

  BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
  if (!bc) return OpensslError("basicConstraints");
  bc->ca = 0;
  if (!X509_add1_ext_i2d(cert, NID_basic_constraints, bc.get(), 1, X509V3_ADD_DEFAULT)) {
    return OpensslError("basicConstraints");
  }

  BitStringPtr ku(ASN1_BIT_STRING_new());
  if (!ku || !ASN1_BIT_STRING_set_bit(ku.get(), 0, 1) ||  // digitalSignature
      (kind == KeyKind::kRsa2048 && !ASN1_BIT_STRING_set_bit(ku.get(), 2, 1)) ||  // keyEnciph.
      !X509_add1_ext_i2d(cert, NID_key_usage, ku.get(), 1, X509V3_ADD_DEFAULT)) {
    return OpensslError("keyUsage");
  }

  EkuPtr eku(sk_ASN1_OBJECT_new_null());
  if (!eku || !sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth)) ||
      !sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_client_auth)) ||
      !X509_add1_ext_i2d(cert, NID_ext_key_usage, eku.get(), 0, X509V3_ADD_DEFAULT)) {
    return OpensslError("extendedKeyUsage");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  ExtensionPtr ski(X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash"));
  if (!ski || !X509_add_ext(cert, ski.get(), -1)) return OpensslError("subjectKeyIdentifier");
  return absl::OkStatus();
}

absl::StatusOr<X509Ptr> MakeSelfSigned(EVP_PKEY* key, KeyKind kind, const std::string& hostname) {
  X509Ptr cert(X509_new());
  if (!cert || !X509_set_version(cert.get(), X509_VERSION_3)) return OpensslError("X509_new");

  // 128 random bits, top bit clear so the INTEGER stays positive in 16 bytes,
  // next bit set so it is never short or zero.
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) return OpensslError("RAND_bytes");
  serial_bytes[0] = (serial_bytes[0] & 0x7f) | 0x40;
  BignumPtr serial(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (!serial || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))) {
    return OpensslError("serial");
  }

  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(kValidityDays), 0,
                        nullptr)) {
    return OpensslError("validity");
  }

  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(hostname.c_str()),
                                  static_cast<int>(hostname.size()), -1, 0) ||
      !X509_set_issuer_name(cert.get(), name) || !X509_set_pubkey(cert.get(), key)) {
    return OpensslError("subject");
  }
  absl::Status s = AddExtensions(cert.get(), kind, hostname);
  if (!s.ok()) return s;
  if (X509_sign(cert.get(), key, EVP_sha256()) <= 0) return OpensslError("X509_sign");
  return cert;
}

absl::StatusOr<std::string> ToPem(X509* cert, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return OpensslError("BIO_new");
  int ok = cert != nullptr
               ? PEM_write_bio_X509(bio.get(), cert)
               : PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  if (!ok) return OpensslError("PEM encoding");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(len));
  // The memory BIO's buffer held the key: wipe it before it is freed.
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  return pem;
}

// Writes `path` so that readers see the old file or all of the new one. The
// temporary file is created with `mode` (never wider), so a key is never
// readable by others, not even briefly.
absl::Status WriteFileAtomically(const std::string& dir, const std::string& path,
                                 const std::string& data, mode_t mode) {
  std::string tmp = absl::StrCat(path, ".tmp");
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("unlink ", tmp));
  }
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("create ", tmp));
  auto fail = [&](const std::string& what) {
    int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat(what, " ", tmp));
  };
  if (fchmod(fd, mode) != 0) return fail("fchmod");  // exact, whatever the umask
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("fsync");
  if (close(fd) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("close ", tmp));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError(err, absl::StrCat("rename ", tmp));
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoError(errno, absl::StrCat("open ", dir));
  int rc = fsync(dfd);
  int err = errno;
  close(dfd);
  if (rc != 0) return ErrnoError(err, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

absl::Status GeneratePair(KeyKind kind, const std::string& dir, const std::string& cert_path,
                          const std::string& key_path, const std::string& hostname) {
  absl::StatusOr<PkeyPtr> key = GenerateKey(kind);
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> cert = MakeSelfSigned(key->get(), kind, hostname);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key_pem = ToPem(nullptr, key->get());
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = ToPem(cert->get(), nullptr);
  if (!cert_pem.ok()) return cert_pem.status();
  // Key first: until the certificate follows, the pair does not match and a
  // restart would generate both again.
  absl::Status s = WriteFileAtomically(dir, key_path, *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!s.ok()) return s;
  return WriteFileAtomically(dir, cert_path, *cert_pem, 0644);
}

}  // namespace

absl::StatusOr<CertificatePaths> EnsureDefaultCertificate(const std::string& data_dir,
                                                          const std::string& hostname) {
  if (!ValidHostname(hostname)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hostname unusable in a certificate: \"", hostname, "\""));
  }
  if (data_dir.empty()) return absl::InvalidArgumentError("empty data dir");
  const std::string dir = absl::StrCat(data_dir, "/certs");
  absl::Status s = MakeDirs(dir, 0700);
  if (!s.ok()) return s;
  if (chmod(dir.c_str(), 0700) != 0) return ErrnoError(errno, absl::StrCat("chmod ", dir));

  CertificatePaths paths;
  for (const PairSpec& spec : kPairs) {
    std::string cert_path = absl::StrCat(dir, "/", spec.stem, ".crt");
    std::string key_path = absl::StrCat(dir, "/", spec.stem, ".key");
    ERR_clear_error();
    if (CheckExisting(spec.kind, cert_path, key_path, hostname).ok()) {
      struct stat st;
      if (stat(key_path.c_str(), &st) != 0) return ErrnoError(errno, "stat " + key_path);
      if ((st.st_mode & 07777) != 0600 && chmod(key_path.c_str(), 0600) != 0) {
        return ErrnoError(errno, absl::StrCat("chmod ", key_path));
      }
    } else {
      s = GeneratePair(spec.kind, dir, cert_path, key_path, hostname);
      if (!s.ok()) return s;
    }
    paths.pairs.emplace_back(std::move(cert_path), std::move(key_path));
  }
  return paths;
}

}  // namespace postern::control
