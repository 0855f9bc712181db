#include "engine/inbound/user_db.h"

#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"

namespace postern::engine {
namespace {

constexpr size_t kMaxUserName = 256;
constexpr std::string_view kHashPrefix = "$argon2id$";

absl::Status InitSodium() {
  // Idempotent and thread-safe; -1 only if the library cannot initialise.
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  return absl::OkStatus();
}

// Splits on '\n', dropping one trailing '\r' per line. A final line without
// '\n' counts; the empty piece after a final '\n' does not.
std::vector<std::string_view> Lines(std::string_view contents) {
  std::vector<std::string_view> lines;
  while (!contents.empty()) {
    const size_t lf = contents.find('\n');
    std::string_view line = contents.substr(0, lf);
    contents.remove_prefix(lf == std::string_view::npos ? contents.size() : lf + 1);
    lines.push_back(line);
  }
  return lines;
}

std::string_view WithoutCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsIgnored(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t");
  return first == std::string_view::npos || line[first] == '#';
}

// The name field of a user line (what precedes the first ':').
std::string_view NameField(std::string_view line) { return line.substr(0, line.find(':')); }

}  // namespace

absl::Status UserDb::CheckUserName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty user name");
  if (name.size() > kMaxUserName) {
    return absl::InvalidArgumentError(absl::StrCat("user name longer than ", kMaxUserName));
  }
  for (unsigned char c : name) {
    if (c == ':' || c <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError("user name contains ':', a blank or a control character");
    }
  }
  return absl::OkStatus();
}

absl::Status UserDb::CheckDomain(std::string_view domain) {
  std::string_view rest = domain;
  if (!rest.empty() && rest.front() == '.') rest.remove_prefix(1);
  bool ok = !rest.empty() && rest.size() <= 253 && rest.front() != '.' && rest.back() != '.' &&
            rest.find("..") == std::string_view::npos;
  for (char c : rest) {
    ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(Absl(domain)), "\" is not a domain (or .domain)"));
  }
  return absl::OkStatus();
}

std::string UserDb::FormatLine(std::string_view name, std::string_view hash,
                               const std::vector<std::string>& domains) {
  std::string line = absl::StrCat(Absl(name), ":", Absl(hash), ":");
  for (size_t i = 0; i < domains.size(); ++i) {
    if (i > 0) line += ',';
    line += domains[i];
  }
  return line;
}

absl::StatusOr<std::unique_ptr<UserDb>> UserDb::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    absl::Status status = err == ENOENT   ? absl::NotFoundError("")
                          : err == EACCES ? absl::PermissionDeniedError("")
                                          : absl::UnavailableError("");
    return absl::Status(status.code(), absl::StrCat("users file ", path, ": ", std::strerror(err)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(absl::StrCat("users file ", path, ": read error"));
  return Parse(contents.str(), path);
}

absl::StatusOr<std::unique_ptr<UserDb>> UserDb::Parse(std::string_view contents,
                                                      std::string_view name) {
  if (absl::Status s = InitSodium(); !s.ok()) return s;
  auto db = std::unique_ptr<UserDb>(new UserDb());
  const std::vector<std::string_view> lines = Lines(contents);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = WithoutCr(lines[i]);
    if (IsIgnored(line)) continue;
    auto error = [&](absl::string_view problem) {
      return absl::InvalidArgumentError(absl::StrCat(Absl(name), ": line ", i + 1, ": ", problem));
    };
    const size_t colon1 = line.find(':');
    if (colon1 == std::string_view::npos) return error("expected name:hash[:domains]");
    const std::string_view user = line.substr(0, colon1);
    if (absl::Status s = CheckUserName(user); !s.ok()) return error(s.message());
    const std::string_view rest = line.substr(colon1 + 1);
    const size_t colon2 = rest.find(':');
    const std::string_view hash = rest.substr(0, colon2);
    const std::string_view domain_list =
        colon2 == std::string_view::npos ? std::string_view() : rest.substr(colon2 + 1);
    // crypto_pwhash_str_needs_rehash parses the string: -1 if it is not an
    // argon2id hash at all. The hash itself stays out of the message.
    const std::string hash_str(hash);
    if (hash.substr(0, kHashPrefix.size()) != kHashPrefix ||
        hash.size() >= crypto_pwhash_STRBYTES ||
        crypto_pwhash_str_needs_rehash(hash_str.c_str(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0) {
      return error("the hash is not an argon2id hash (make one with postern-passwd)");
    }
    User entry;
    entry.hash = hash_str;
    // "a,b": every piece must be a domain, so "a," and ",a" are errors; only
    // an empty list means none.
    for (size_t start = 0; !domain_list.empty();) {
      const size_t comma = domain_list.find(',', start);
      const std::string_view domain = domain_list.substr(start, comma - start);
      if (absl::Status s = CheckDomain(domain); !s.ok()) return error(s.message());
      entry.domains.push_back(absl::AsciiStrToLower(Absl(domain)));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    if (!db->users_.emplace(std::string(user), std::move(entry)).second) {
      return error(absl::StrCat("duplicate user \"", Absl(user), "\""));
    }
  }
  // A dummy with the default costs: an unknown name then takes as long as a
  // wrong password for users hashed with the defaults.
  absl::StatusOr<std::string> dummy = HashPassword("postern-dummy-password");
  if (!dummy.ok()) return dummy.status();
  db->dummy_hash_ = *std::move(dummy);
  return db;
}

absl::StatusOr<std::string> UserDb::HashPassword(std::string_view password) {
  if (absl::Status s = InitSodium(); !s.ok()) return s;
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(),
                            crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return absl::ResourceExhaustedError("argon2id: out of memory");
  }
  return std::string(out);
}

bool UserDb::Verify(std::string_view username, std::string_view password,
                    std::vector<std::string>* domains) const {
  const auto it = users_.find(username);
  const std::string& hash = it == users_.end() ? dummy_hash_ : it->second.hash;
  const bool match = crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
  if (it == users_.end() || !match) return false;
  if (domains != nullptr) *domains = it->second.domains;
  return true;
}

std::string EditUsersFile(std::string_view contents, std::string_view user, std::string_view line,
                          bool* found) {
  *found = false;
  std::string out;
  for (std::string_view existing : Lines(contents)) {
    const std::string_view bare = WithoutCr(existing);
    if (!IsIgnored(bare) && NameField(bare) == user) {
      // A duplicate (which Load refuses) is dropped along with the first.
      if (!*found && !line.empty()) absl::StrAppend(&out, Absl(line), "\n");
      *found = true;
      continue;
    }
    absl::StrAppend(&out, Absl(existing), "\n");
  }
  if (!*found && !line.empty()) absl::StrAppend(&out, Absl(line), "\n");
  return out;
}

}  // namespace postern::engine
