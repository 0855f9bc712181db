// UserDb: the AUTH users file (`relay.users_file`), password hashes only.
//
// Format (written by postern-passwd), one user per line:
//
//   # comment
//   alice:$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>:example.com,example.net
//   bob:$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>:
//
// name ':' hash [':' domains]. The name is 1-256 bytes without ':', blanks or
// control characters, compared exactly (case-sensitive). The hash is a
// libsodium crypto_pwhash_str string for argon2id (it carries its own cost
// parameters, so hashes made with other costs keep working). The domains,
// comma-separated and possibly none, are those the user may use in MAIL FROM
// when `relay.sender_login_match` is on ("x.example" exactly, ".x.example"
// for it and its subdomains). Lines starting with '#' (after optional blanks)
// and blank lines are ignored; CRLF line ends are accepted.
//
// Cost: HashPassword uses libsodium's INTERACTIVE limits for argon2id (t=2,
// 64 MiB), its recommendation for online logins: about 70 ms per Verify on
// the development machine (AMD EPYC), and 64 MiB while it runs. That is far
// too slow for the event loop: Verify runs on AuthVerifier's thread.
//
// Thread-safety: immutable after Load; Verify may run on any number of
// threads at once.
#ifndef POSTERN_ENGINE_INBOUND_USER_DB_H_
#define POSTERN_ENGINE_INBOUND_USER_DB_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::engine {

class UserDb {
 public:
  // Reads and checks the whole file. Errors name the path and the line
  // ("users: line 3: ...") and never contain a hash. Also computes the dummy
  // hash used for unknown users (one hash: tens of milliseconds).
  static absl::StatusOr<std::unique_ptr<UserDb>> Load(const std::string& path);
  // The same from the file's contents; `name` stands for the path in errors.
  static absl::StatusOr<std::unique_ptr<UserDb>> Parse(std::string_view contents,
                                                       std::string_view name);

  // An argon2id hash string for `password` with the costs above (random
  // salt). Fails only if libsodium cannot initialise or allocate.
  static absl::StatusOr<std::string> HashPassword(std::string_view password);

  // True if `username` exists and `password` matches its hash; then, if
  // `domains` is not null, it receives the user's domains. An unknown user
  // costs the same as a wrong password (the password is checked against a
  // dummy hash), so timing does not reveal which names exist.
  bool Verify(std::string_view username, std::string_view password,
              std::vector<std::string>* domains) const;

  size_t size() const { return users_.size(); }

  // Line syntax checks, shared with postern-passwd. OK or InvalidArgument
  // saying what is wrong (never echoing a hash).
  static absl::Status CheckUserName(std::string_view name);
  static absl::Status CheckDomain(std::string_view domain);

  // The file line for a user (without newline).
  static std::string FormatLine(std::string_view name, std::string_view hash,
                                const std::vector<std::string>& domains);

 private:
  struct User {
    std::string hash;
    std::vector<std::string> domains;
  };

  UserDb() = default;

  std::map<std::string, User, std::less<>> users_;
  std::string dummy_hash_;
};

// Returns `contents` (a users file) with the line of `user` replaced by
// `line`, or `line` appended if the user has none; an empty `line` removes
// the user's line instead. Every other line is kept byte for byte, and the
// result ends in a newline unless it is empty. *found tells whether the user
// had a line. Used by postern-passwd.
std::string EditUsersFile(std::string_view contents, std::string_view user, std::string_view line,
                          bool* found);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_USER_DB_H_
