#include "engine/outbound/outbound_tls_check.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tls/tls_client_context.h"

namespace postern::engine {
namespace {

using config::v1::OutboundTlsMode;

// Lowercase, one trailing dot dropped: "MX.Example." and "mx.example" are
// the same name.
std::string NormalizeName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  absl::AsciiStrToLower(&out);
  return out;
}

// Printable ASCII without spaces: what a DNS name in a certificate can be.
// Anything else (an embedded NUL, UTF-8) never matches.
bool IsPlausibleName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

int VersionRank(std::string_view version) {
  if (version == "TLSv1.3") return 13;
  if (version == "TLSv1.2") return 12;
  if (version == "TLSv1.1") return 11;
  if (version == "TLSv1") return 10;
  return 0;
}

int MinRank(config::v1::TlsVersion v) { return v == config::v1::TLS_VERSION_1_3 ? 13 : 12; }

const char* MinName(config::v1::TlsVersion v) {
  return v == config::v1::TLS_VERSION_1_3 ? "TLSv1.3" : "TLSv1.2";
}

OutboundTlsVerdict Fail(const char* type, std::string diagnostic) {
  return {.ok = false, .result_type = type, .diagnostic = std::move(diagnostic)};
}

OutboundTlsVerdict Ok(std::string diagnostic) {
  return {.ok = true, .result_type = "", .diagnostic = std::move(diagnostic)};
}

std::string Describe(const OutboundTlsFacts& f) { return absl::StrCat(f.version, " ", f.cipher); }

// At most a few names in a diagnostic; certificates can carry hundreds.
std::string NameList(const std::vector<std::string>& names) {
  constexpr size_t kMax = 5;
  std::vector<std::string> shown(names.begin(),
                                 names.begin() + static_cast<long>(std::min(names.size(), kMax)));
  std::string out = absl::StrJoin(shown, ", ");
  if (names.size() > kMax) absl::StrAppend(&out, ", ... (", names.size(), " in all)");
  return out;
}

std::string_view StripPrefixCaseInsensitive(std::string_view s, std::string_view prefix, bool* ok) {
  *ok = s.size() >= prefix.size() &&
        absl::EqualsIgnoreCase(absl::string_view(s.data(), prefix.size()),
                               absl::string_view(prefix.data(), prefix.size()));
  return *ok ? s.substr(prefix.size()) : s;
}

}  // namespace

OutboundTlsFacts OutboundTlsFacts::FromSession(const TlsSession& session) {
  OutboundTlsFacts f;
  f.established = session.handshake_done();
  f.version_mismatch = session.version_mismatch();
  f.failure_reason = session.failure_reason();
  f.version = session.version();
  f.cipher = session.cipher();
  f.verify_result = session.peer_verify_result();
  f.peer_chain = session.peer_chain();
  f.peer_leaf = session.peer_certificate();
  return f;
}

absl::Status OutboundTlsCheck::ValidatePin(std::string_view pin) {
  bool ok = false;
  std::string_view hex = StripPrefixCaseInsensitive(pin, "sha256:", &ok);
  if (!ok || hex.size() != 64 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("pin \"", std::string(pin), "\" is not sha256:<64 hex digits>"));
  }
  return absl::OkStatus();
}

absl::StatusOr<OutboundTlsCheck> OutboundTlsCheck::Create(OutboundTlsRequirements requirements) {
  std::vector<std::string> pin_hex;
  for (const std::string& pin : requirements.pins) {
    absl::Status s = ValidatePin(pin);
    if (!s.ok()) return s;
    pin_hex.push_back(absl::AsciiStrToLower(absl::string_view(pin).substr(7)));
  }
  if (requirements.mode == config::v1::OUTBOUND_TLS_MODE_PIN && pin_hex.empty()) {
    return absl::InvalidArgumentError("outbound TLS mode pin needs at least one pin");
  }
  OutboundTlsCheck check(std::move(requirements));
  check.pin_hex_ = std::move(pin_hex);
  return check;
}

bool OutboundTlsCheck::NameMatches(std::string_view reference, std::string_view presented) {
  std::string ref = NormalizeName(reference);
  std::string pres = NormalizeName(presented);
  if (!IsPlausibleName(ref) || !IsPlausibleName(pres)) return false;
  if (ref.find('*') != std::string::npos) return false;
  if (pres.find('*') == std::string::npos) return ref == pres;
  // A wildcard: only "*." + a suffix of at least two labels, no other '*'.
  if (pres.size() < 2 || pres[0] != '*' || pres[1] != '.') return false;
  std::string_view suffix = std::string_view(pres).substr(2);
  if (suffix.find('*') != std::string_view::npos || suffix.find('.') == std::string_view::npos ||
      suffix.front() == '.') {
    return false;
  }
  if (TlsClientContext::IsIpLiteral(ref)) return false;
  size_t dot = ref.find('.');
  if (dot == 0 || dot == std::string::npos) return false;  // one non-empty label
  return std::string_view(ref).substr(dot + 1) == suffix;
}

absl::StatusOr<std::vector<std::string>> OutboundTlsCheck::PresentedNames(std::string_view der) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(der.data());
  bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError("peer certificate does not parse");
  }
  std::vector<std::string> names;
  bool any_dns = false;
  bssl::UniquePtr<GENERAL_NAMES> sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
      if (gn->type != GEN_DNS) continue;
      any_dns = true;
      const ASN1_STRING* s = gn->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  ERR_clear_error();  // a malformed SAN extension reads as "no dNSName"
  if (any_dns) return names;
  const X509_NAME* subject = X509_get_subject_name(cert.get());
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    uint8_t* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len < 0) {
      ERR_clear_error();
      continue;
    }
    names.emplace_back(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
  }
  return names;
}

const char* OutboundTlsCheck::ResultTypeForVerifyError(int x509_error) {
  switch (x509_error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return kTlsrptCertificateExpired;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
      return kTlsrptCertificateNotTrusted;
    default:
      return kTlsrptValidationFailure;
  }
}

OutboundTlsVerdict OutboundTlsCheck::Evaluate(const OutboundTlsFacts& facts,
                                              std::string_view mx_host,
                                              std::string_view domain) const {
  const OutboundTlsMode mode = requirements_.mode;
  if (mode == config::v1::OUTBOUND_TLS_MODE_NONE) return Ok("TLS not used (mode none)");
  const bool opportunistic = mode != config::v1::OUTBOUND_TLS_MODE_REQUIRE &&
                             mode != config::v1::OUTBOUND_TLS_MODE_VERIFY &&
                             mode != config::v1::OUTBOUND_TLS_MODE_PIN;
  if (!facts.starttls_offered) {
    if (opportunistic) return Ok("STARTTLS not offered; plaintext");
    return Fail(kTlsrptStarttlsNotSupported, "the server does not offer STARTTLS");
  }
  if (!facts.established) {
    std::string why = absl::StrCat("TLS handshake failed: ", facts.failure_reason);
    if (opportunistic) return Ok(absl::StrCat(why, "; plaintext allowed"));
    if (facts.version_mismatch) {
      return Fail(kTlsrptProtocolVersionTooLow,
                  absl::StrCat(why, " (no common version at ", MinName(requirements_.min_version),
                               " or above)"));
    }
    return Fail(kTlsrptValidationFailure, std::move(why));
  }
  if (opportunistic) return Ok(Describe(facts));
  if (VersionRank(facts.version) < MinRank(requirements_.min_version)) {
    return Fail(kTlsrptProtocolVersionTooLow,
                absl::StrCat("negotiated ", facts.version, ", policy requires ",
                             MinName(requirements_.min_version), " or above"));
  }
  if (mode == config::v1::OUTBOUND_TLS_MODE_VERIFY) return CheckVerify(facts, mx_host, domain);
  if (mode == config::v1::OUTBOUND_TLS_MODE_PIN) return CheckPin(facts);
  return Ok(Describe(facts));
}

OutboundTlsVerdict OutboundTlsCheck::CheckVerify(const OutboundTlsFacts& facts,
                                                 std::string_view mx_host,
                                                 std::string_view domain) const {
  if (!facts.verify_result.has_value()) {
    // A wiring mistake, not the peer's: the session came from a context
    // without a CA store. Failing closed keeps verify meaning verified.
    return Fail(kTlsrptValidationFailure,
                "certificate chain not checked (TLS client context without verify_peer)");
  }
  if (*facts.verify_result != X509_V_OK) {
    return Fail(
        ResultTypeForVerifyError(*facts.verify_result),
        absl::StrCat("certificate chain: ", X509_verify_cert_error_string(*facts.verify_result)));
  }
  if (facts.peer_chain.empty()) {
    return Fail(kTlsrptValidationFailure, "the server sent no certificate");
  }
  absl::StatusOr<std::vector<std::string>> presented = PresentedNames(facts.peer_chain[0]);
  if (!presented.ok()) {
    return Fail(kTlsrptValidationFailure, std::string(presented.status().message()));
  }
  std::vector<std::string> references = requirements_.match;
  if (references.empty()) {
    if (!mx_host.empty()) references.emplace_back(mx_host);
    if (!domain.empty()) references.emplace_back(domain);
  }
  for (const std::string& ref : references) {
    for (const std::string& name : *presented) {
      if (NameMatches(ref, name)) {
        return Ok(
            absl::StrCat(Describe(facts), ", verified, certificate name ", name, " matches ", ref));
      }
    }
  }
  return Fail(kTlsrptCertificateHostMismatch,
              absl::StrCat("certificate names [", NameList(*presented), "] match none of [",
                           NameList(references), "]"));
}

OutboundTlsVerdict OutboundTlsCheck::CheckPin(const OutboundTlsFacts& facts) const {
  if (!facts.peer_leaf.has_value()) {
    return Fail(kTlsrptValidationFailure, "the server sent no certificate");
  }
  const PeerCertificate& leaf = *facts.peer_leaf;
  for (const std::string& pin : pin_hex_) {
    if (pin == leaf.sha256_cert_hex) {
      return Ok(absl::StrCat(Describe(facts), ", certificate pin sha256:", pin, " matches"));
    }
    if (!leaf.sha256_spki_hex.empty() && pin == leaf.sha256_spki_hex) {
      return Ok(absl::StrCat(Describe(facts), ", public key pin sha256:", pin, " matches"));
    }
  }
  return Fail(kTlsrptPinMismatch, absl::StrCat("certificate sha256:", leaf.sha256_cert_hex,
                                               " (public key sha256:", leaf.sha256_spki_hex,
                                               ") matches none of ", pin_hex_.size(), " pins"));
}

}  // namespace postern::engine
