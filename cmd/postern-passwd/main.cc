// postern-passwd: maintains the AUTH users file (relay.users_file).
//
//   postern-passwd FILE USER [--domains a.example,.b.example]
//   postern-passwd --delete FILE USER
//
// Adding or replacing reads the password from stdin: one line, without its
// line end. On a terminal it prompts on stderr with echo off and asks twice;
// otherwise it reads one line (for scripts: `printf '%s\n' "$pw" |
// postern-passwd ...`). The password never appears on the command line, where
// other users could read it in ps.
//
// The file is created with mode 0600 if missing. Changes are atomic: the new
// contents go to a temporary file in the same directory (mode 0600, or the
// existing file's mode and owner), which is synced and renamed over the
// file, so a running node reading it sees the old or the new file, never
// half of one. Comments and other users' lines are kept byte for byte.
// Concurrent runs on the same file are not coordinated: the last rename wins.
//
// A running node picks changes up on SIGHUP (it re-reads users_file).
//
// Exit status 0 on success, 1 on any error (message on stderr); deleting a
// user that does not exist is an error.
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/inbound/user_db.h"

namespace postern {
namespace {

using engine::UserDb;

constexpr char kUsage[] =
    "usage: postern-passwd FILE USER [--domains a.example,.b.example]\n"
    "       postern-passwd --delete FILE USER\n"
    "The password is read from stdin (one line; no echo on a terminal).\n";

int Fail(absl::string_view message) {
  std::fprintf(stderr, "postern-passwd: %.*s\n", static_cast<int>(message.size()), message.data());
  return 1;
}

absl::Status Errno(absl::string_view what, absl::string_view path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Zeroes what a string held. The verifier side uses sodium_memzero; here a
// volatile loop keeps the tool free of a direct libsodium dependency.
void Wipe(std::string* s) {
  s->resize(s->capacity());
  volatile char* p = s->data();
  for (size_t i = 0; i < s->size(); ++i) p[i] = 0;
  s->clear();
}

// One line from stdin without "\n" or "\r\n". False at EOF before any byte.
bool ReadLine(std::string* line) {
  line->clear();
  int c;
  bool any = false;
  while ((c = std::getchar()) != EOF) {
    any = true;
    if (c == '\n') break;
    line->push_back(static_cast<char>(c));
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return any;
}

// Reads a line with terminal echo off, prompting on stderr.
bool ReadHidden(const char* prompt, std::string* line) {
  std::fputs(prompt, stderr);
  std::fflush(stderr);
  termios old_mode;
  const bool tty = tcgetattr(STDIN_FILENO, &old_mode) == 0;
  if (tty) {
    termios quiet = old_mode;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  const bool ok = ReadLine(line);
  if (tty) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old_mode);
  return ok;
}

absl::StatusOr<std::string> ReadPassword() {
  std::string password;
  if (isatty(STDIN_FILENO)) {
    std::string again;
    if (!ReadHidden("Password: ", &password) || !ReadHidden("Retype password: ", &again)) {
      return absl::InvalidArgumentError("no password given");
    }
    const bool same = password == again;
    Wipe(&again);
    if (!same) {
      Wipe(&password);
      return absl::InvalidArgumentError("passwords do not match");
    }
  } else if (!ReadLine(&password)) {
    return absl::InvalidArgumentError("no password on stdin");
  }
  if (password.empty()) return absl::InvalidArgumentError("empty password");
  return password;
}

// The whole file, or "" if it does not exist (*exists false).
absl::StatusOr<std::string> ReadFile(const std::string& path, struct stat* st, bool* exists) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *exists = false;
      return std::string();
    }
    return Errno("cannot open", path);
  }
  *exists = true;
  std::string contents;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) contents.append(buf, static_cast<size_t>(n));
  const int read_errno = errno;
  const bool stat_ok = fstat(fd, st) == 0;
  close(fd);
  if (n < 0) {
    errno = read_errno;
    return Errno("cannot read", path);
  }
  if (!stat_ok) return Errno("cannot stat", path);
  return contents;
}

// Temp file + fsync + rename + directory fsync: all or nothing, durable.
absl::Status WriteAtomically(const std::string& path, std::string_view contents,
                             const struct stat* existing) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());  // mode 0600
  if (fd < 0) return Errno("cannot create a temporary file next to", path);
  auto fail = [&](absl::string_view what) {
    absl::Status status = Errno(what, tmp);
    close(fd);
    unlink(tmp.c_str());
    return status;
  };
  if (existing != nullptr) {
    // Keep who may read it: an operator may have given the node's group
    // access. Changing the owner needs privileges; failing that is fine
    // (the file then belongs to whoever ran the tool, as a new file would).
    if (fchmod(fd, existing->st_mode & 07777) != 0) return fail("cannot chmod");
    if (fchown(fd, existing->st_uid, existing->st_gid) != 0 && errno != EPERM) {
      return fail("cannot chown");
    }
  }
  for (size_t done = 0; done < contents.size();) {
    const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("cannot sync");
  if (close(fd) != 0) {
    absl::Status status = Errno("cannot close", tmp);
    unlink(tmp.c_str());
    return status;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status status = Errno("cannot rename over", path);
    unlink(tmp.c_str());
    return status;
  }
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);  // best effort: the rename is done either way
    close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseDomains(std::string_view list) {
  std::vector<std::string> domains;
  if (list.empty()) return domains;
  for (size_t start = 0;;) {
    const size_t comma = list.find(',', start);
    const std::string domain(list.substr(start, comma - start));
    if (absl::Status s = UserDb::CheckDomain(domain); !s.ok()) return s;
    domains.push_back(domain);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return domains;
}

int Main(int argc, char** argv) {
  std::vector<std::string_view> positional;
  bool remove = false;
  bool has_domains = false;
  std::string_view domain_list;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--delete") {
      remove = true;
    } else if (arg == "--domains" && i + 1 < argc) {
      has_domains = true;
      domain_list = argv[++i];
    } else if (arg.substr(0, 10) == "--domains=") {
      has_domains = true;
      domain_list = arg.substr(10);
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown option ", std::string(arg)));
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2 || (remove && has_domains)) {
    std::fputs(kUsage, stderr);
    return 1;
  }
  const std::string path(positional[0]);
  const std::string user(positional[1]);
  if (absl::Status s = UserDb::CheckUserName(user); !s.ok()) return Fail(s.message());
  absl::StatusOr<std::vector<std::string>> domains = ParseDomains(domain_list);
  if (!domains.ok()) return Fail(domains.status().message());

  struct stat st {};
  bool exists = false;
  absl::StatusOr<std::string> contents = ReadFile(path, &st, &exists);
  if (!contents.ok()) return Fail(contents.status().message());

  std::string line;
  if (!remove) {
    absl::StatusOr<std::string> password = ReadPassword();
    if (!password.ok()) return Fail(password.status().message());
    absl::StatusOr<std::string> hash = UserDb::HashPassword(*password);
    Wipe(&*password);
    if (!hash.ok()) return Fail(hash.status().message());
    line = UserDb::FormatLine(user, *hash, *domains);
  }
  bool found = false;
  const std::string updated = engine::EditUsersFile(*contents, user, line, &found);
  if (remove && !found) return Fail(absl::StrCat("no user \"", user, "\" in ", path));
  // Refuse to write a file the node would refuse to load (e.g. it already
  // had a broken line): better to stop here than to break the next reload.
  if (absl::StatusOr<std::unique_ptr<UserDb>> check = UserDb::Parse(updated, path); !check.ok()) {
    return Fail(absl::StrCat("not written: ", check.status().message()));
  }
  if (absl::Status s = WriteAtomically(path, updated, exists ? &st : nullptr); !s.ok()) {
    return Fail(s.message());
  }
  std::fprintf(stderr, "postern-passwd: %s user \"%s\" in %s\n",
               remove ? "deleted" : (found ? "updated" : "added"), user.c_str(), path.c_str());
  return 0;
}

}  // namespace
}  // namespace postern

int main(int argc, char** argv) { return postern::Main(argc, argv); }
