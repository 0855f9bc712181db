// DnsResolver against a real DNS server: dnsmasq (Debian dnsmasq-base),
// started per test on a free loopback port, and driven by a poll() loop as
// the worker's io_uring loop would drive it.
#include "engine/outbound/dns_resolver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

std::string FindDnsmasq() {
  // Bazel's test PATH leaves out the sbin directories where Debian puts it.
  std::vector<std::string> dirs = {"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"};
  if (const char* path = getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string dir; std::getline(ss, dir, ':');) dirs.push_back(dir);
  }
  for (const std::string& dir : dirs) {
    std::string candidate = dir + "/dnsmasq";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// A loopback port free for both TCP and UDP at the time of asking.
uint16_t FreePort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(tcp);
      continue;
    }
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    bool ok = bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(udp);
    close(tcp);
    if (ok) return ntohs(addr.sin_port);
  }
  return 0;
}

bool TcpConnects(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// One dnsmasq child process with its pid and log files in a temp dir.
class Dnsmasq {
 public:
  ~Dnsmasq() { Stop(); }

  // Starts dnsmasq with `records` (its record options) and waits until it
  // answers TCP connects on its port.
  ::testing::AssertionResult Start(const std::vector<std::string>& records) {
    std::string binary = FindDnsmasq();
    if (binary.empty()) {
      return ::testing::AssertionFailure()
             << "dnsmasq not found in /usr/sbin or PATH: install the Debian package "
                "dnsmasq-base (tools/setup.sh installs it)";
    }
    const char* tmp = getenv("TEST_TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/dnsmasq.XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return ::testing::AssertionFailure() << "mkdtemp: " << strerror(errno);
    }
    dir_ = pattern;
    passwd* pw = getpwuid(getuid());
    group* gr = getgrgid(getgid());
    for (int attempt = 0; attempt < 3; ++attempt) {  // the port may be taken in between
      port_ = FreePort();
      std::vector<std::string> args = {
          binary,
          "--keep-in-foreground",
          "--conf-file=/dev/null",  // never read the machine's /etc/dnsmasq.conf
          "--no-resolv",
          "--no-hosts",
          "--no-ident",
          absl::StrCat("--port=", port_),
          "--listen-address=127.0.0.1",
          "--bind-interfaces",
          absl::StrCat("--pid-file=", dir_, "/dnsmasq.pid"),
          absl::StrCat("--log-facility=", dir_, "/dnsmasq.log"),
      };
      // Stay the user we are (root in CI) instead of dnsmasq's default "nobody".
      if (pw != nullptr) args.push_back(absl::StrCat("--user=", pw->pw_name));
      if (gr != nullptr) args.push_back(absl::StrCat("--group=", gr->gr_name));
      args.insert(args.end(), records.begin(), records.end());
      pid_ = Spawn(args);
      if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
      for (int64_t deadline = NowMs() + 5000; NowMs() < deadline;) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;  // exited: try another port
        }
        if (TcpConnects(port_)) return ::testing::AssertionSuccess();
        poll(nullptr, 0, 5);
      }
      Stop();
    }
    return ::testing::AssertionFailure() << "dnsmasq did not start; log: " << Log();
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  std::string Log() const {
    std::ifstream in(dir_ + "/dnsmasq.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void RemoveDir() {
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  std::string server() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  static pid_t Spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      int devnull = open("/dev/null", O_RDWR);
      dup2(devnull, STDIN_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_;
};

// The whole event loop of the test: poll() on the resolver's sockets with
// its timeout, until `done` or max_ms pass.
bool Drive(DnsResolver& resolver, const std::function<bool()>& done, int64_t max_ms = 5000) {
  const int64_t deadline = NowMs() + max_ms;
  while (!done()) {
    if (NowMs() > deadline) return false;
    std::vector<pollfd> pfds;
    for (const DnsResolver::FdInterest& i : resolver.Fds()) {
      pfds.push_back(
          {i.fd, static_cast<short>((i.read ? POLLIN : 0) | (i.write ? POLLOUT : 0)), 0});
    }
    int64_t timeout = resolver.NextTimeoutMs();
    timeout = timeout < 0 ? 50 : std::min<int64_t>(timeout, 1000);
    int n = poll(pfds.data(), pfds.size(), static_cast<int>(timeout));
    if (n <= 0) {
      resolver.ProcessTimeouts();
      continue;
    }
    for (const pollfd& p : pfds) {
      if (p.revents == 0) continue;
      resolver.ProcessFd(p.fd, (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0,
                         (p.revents & POLLOUT) != 0);
    }
  }
  return true;
}

absl::StatusOr<std::vector<MxRecord>> Mx(DnsResolver& resolver, const std::string& domain) {
  std::optional<absl::StatusOr<std::vector<MxRecord>>> result;
  resolver.LookupMx(domain,
                    [&](absl::StatusOr<std::vector<MxRecord>> r) { result = std::move(r); });
  EXPECT_FALSE(result.has_value()) << "callback ran inside LookupMx";
  EXPECT_TRUE(Drive(resolver, [&] { return result.has_value(); })) << "no answer for " << domain;
  return result.has_value() ? *result : absl::DeadlineExceededError("test driver gave up");
}

absl::StatusOr<std::vector<std::string>> Addresses(DnsResolver& resolver, const std::string& host) {
  std::optional<absl::StatusOr<std::vector<std::string>>> result;
  resolver.LookupAddresses(
      host, [&](absl::StatusOr<std::vector<std::string>> r) { result = std::move(r); });
  EXPECT_FALSE(result.has_value()) << "callback ran inside LookupAddresses";
  EXPECT_TRUE(Drive(resolver, [&] { return result.has_value(); })) << "no answer for " << host;
  return result.has_value() ? *result : absl::DeadlineExceededError("test driver gave up");
}

const std::vector<std::string> kRecords = {
    "--local=/test/",  // answer test. from these records only: NXDOMAIN otherwise
    "--local-ttl=60",
    "--mx-host=example.test,mx2.example.test,20",
    "--mx-host=example.test,mx1.example.test,10",
    "--mx-host=nullmx.test,.,0",
    "--host-record=mx1.example.test,192.0.2.1,2001:db8::1",
    "--host-record=mx2.example.test,192.0.2.2",
    "--host-record=a-only.test,192.0.2.7",
    "--cname=alias.test,mx1.example.test",
};

class DnsResolverTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dns_.Start(kRecords)); }
  void TearDown() override {
    resolver_.reset();
    dns_.Stop();
    if (HasFailure()) std::cerr << "dnsmasq log:\n" << dns_.Log();
    dns_.RemoveDir();
  }

  DnsResolver& MakeResolver(DnsResolverOptions options = {}) {
    if (options.servers.empty()) options.servers = {dns_.server()};
    options.timeout_ms = 300;
    options.tries = 1;
    if (!options.now_ms) options.now_ms = [this] { return now_ms_; };
    absl::StatusOr<std::unique_ptr<DnsResolver>> r = DnsResolver::Create(std::move(options));
    EXPECT_TRUE(r.ok()) << r.status();
    resolver_ = *std::move(r);
    return *resolver_;
  }

  Dnsmasq dns_;
  std::unique_ptr<DnsResolver> resolver_;
  int64_t now_ms_ = 1'000'000;
};

TEST_F(DnsResolverTest, MxRecordsSortedByPreference) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "Example.TEST.");
  ASSERT_TRUE(mx.ok()) << mx.status();
  EXPECT_THAT(*mx, ElementsAre(MxRecord{10, "mx1.example.test"}, MxRecord{20, "mx2.example.test"}));
  EXPECT_EQ(r.pending(), 0u);
}

TEST_F(DnsResolverTest, NoMxButDomainExistsIsAnEmptyList) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "a-only.test");
  ASSERT_TRUE(mx.ok()) << mx.status();
  EXPECT_THAT(*mx, IsEmpty());
}

TEST_F(DnsResolverTest, NullMxIsReturnedAsTheRoot) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "nullmx.test");
  ASSERT_TRUE(mx.ok()) << mx.status();
  EXPECT_THAT(*mx, ElementsAre(MxRecord{0, "."}));
}

TEST_F(DnsResolverTest, NxDomainIsNotFound) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "nope.test");
  EXPECT_EQ(mx.status().code(), absl::StatusCode::kNotFound) << mx.status();
  absl::StatusOr<std::vector<std::string>> addrs = Addresses(r, "nope.test");
  EXPECT_EQ(addrs.status().code(), absl::StatusCode::kNotFound) << addrs.status();
}

TEST_F(DnsResolverTest, RefusedIsUnavailable) {
  DnsResolver& r = MakeResolver();
  // dnsmasq has no upstream for other domains and answers REFUSED.
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "example.org");
  EXPECT_EQ(mx.status().code(), absl::StatusCode::kUnavailable) << mx.status();
  EXPECT_EQ(Addresses(r, "example.org").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(DnsResolverTest, AddressesMergeAaaaAndA) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<std::string>> addrs = Addresses(r, "mx1.example.test");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("2001:db8::1", "192.0.2.1"));

  addrs = Addresses(r, "a-only.test");  // AAAA: no data; A: one record
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("192.0.2.7"));

  addrs = Addresses(r, "alias.test");  // CNAME to mx1.example.test
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("2001:db8::1", "192.0.2.1"));

  addrs = Addresses(r, "example.test");  // exists (MX) but has no address
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, IsEmpty());
}

TEST_F(DnsResolverTest, Ipv4FirstWhenConfigured) {
  DnsResolverOptions options;
  options.ipv6_first = false;
  DnsResolver& r = MakeResolver(std::move(options));
  absl::StatusOr<std::vector<std::string>> addrs = Addresses(r, "mx1.example.test");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("192.0.2.1", "2001:db8::1"));
}

TEST_F(DnsResolverTest, IpLiteralAndMalformedNamesSendNoQuery) {
  DnsResolver& r = MakeResolver();
  absl::StatusOr<std::vector<std::string>> addrs = Addresses(r, "2001:DB8::0:5");
  ASSERT_TRUE(addrs.ok());
  EXPECT_THAT(*addrs, ElementsAre("2001:db8::5"));
  EXPECT_EQ(Mx(r, "a..test").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Mx(r, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Addresses(r, std::string(64, 'a') + ".test").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.queries_sent(), 0u);
}

TEST_F(DnsResolverTest, PositiveAnswersCachedForTheirTtl) {
  DnsResolver& r = MakeResolver();
  ASSERT_TRUE(Mx(r, "example.test").ok());
  ASSERT_TRUE(Addresses(r, "mx1.example.test").ok());
  EXPECT_EQ(r.queries_sent(), 3u);  // MX, AAAA, A

  dns_.Stop();  // from here on only the cache can answer
  now_ms_ += 59'000;
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "EXAMPLE.test");
  ASSERT_TRUE(mx.ok()) << mx.status();
  EXPECT_EQ(mx->size(), 2u);
  absl::StatusOr<std::vector<std::string>> addrs = Addresses(r, "mx1.example.test");
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_THAT(*addrs, ElementsAre("2001:db8::1", "192.0.2.1"));
  EXPECT_EQ(r.queries_sent(), 3u);

  now_ms_ += 2'000;  // past the 60 s TTL: asks again, and the server is gone
  EXPECT_EQ(Mx(r, "example.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.queries_sent(), 4u);
  // A temporary failure is not cached: the next lookup asks again.
  EXPECT_EQ(Mx(r, "example.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.queries_sent(), 5u);
}

TEST_F(DnsResolverTest, CacheHitStillCallsBackFromTheLoop) {
  DnsResolver& r = MakeResolver();
  ASSERT_TRUE(Mx(r, "example.test").ok());
  EXPECT_EQ(r.NextTimeoutMs(), -1);  // idle
  bool called = false;
  r.LookupMx("example.test", [&](absl::StatusOr<std::vector<MxRecord>> mx) {
    EXPECT_TRUE(mx.ok());
    called = true;
  });
  EXPECT_FALSE(called);
  EXPECT_EQ(r.NextTimeoutMs(), 0);  // a result is waiting
  EXPECT_EQ(r.pending(), 1u);
  r.ProcessTimeouts();
  EXPECT_TRUE(called);
  EXPECT_EQ(r.pending(), 0u);
  EXPECT_EQ(r.queries_sent(), 1u);
}

TEST_F(DnsResolverTest, NegativeAnswersWithoutSoaCachedBriefly) {
  DnsResolverOptions options;
  options.default_negative_ttl_ms = 10'000;
  DnsResolver& r = MakeResolver(std::move(options));
  EXPECT_EQ(Mx(r, "nope.test").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*Mx(r, "a-only.test"), IsEmpty());  // no data
  EXPECT_EQ(r.queries_sent(), 2u);

  dns_.Stop();
  now_ms_ += 9'000;
  EXPECT_EQ(Mx(r, "nope.test").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "a-only.test");
  ASSERT_TRUE(mx.ok()) << mx.status();
  EXPECT_THAT(*mx, IsEmpty());
  EXPECT_EQ(r.queries_sent(), 2u);

  now_ms_ += 2'000;
  EXPECT_EQ(Mx(r, "nope.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Mx(r, "a-only.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.queries_sent(), 4u);
}

TEST_F(DnsResolverTest, NegativeTtlFromSoaCappedByMaxNegativeTtl) {
  // dnsmasq as an authoritative server puts an SOA (TTL and minimum = 20 s)
  // in its negative answers.
  Dnsmasq auth;
  ASSERT_TRUE(
      auth.Start({"--auth-server=ns.auth.test,127.0.0.1", "--auth-zone=auth.test", "--auth-ttl=20",
                  "--auth-soa=1,hostmaster.auth.test", "--host-record=h.auth.test,192.0.2.9"}));
  DnsResolverOptions options;
  options.servers = {auth.server()};
  options.default_negative_ttl_ms = 1'000;  // ignored: the SOA decides
  DnsResolver& r = MakeResolver(std::move(options));
  EXPECT_EQ(Mx(r, "nope.auth.test").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*Mx(r, "h.auth.test"), IsEmpty());

  DnsResolverOptions capped;
  capped.servers = {auth.server()};
  capped.max_negative_ttl_ms = 5'000;
  capped.now_ms = [this] { return now_ms_; };
  capped.timeout_ms = 300;
  capped.tries = 1;
  absl::StatusOr<std::unique_ptr<DnsResolver>> r2 = DnsResolver::Create(std::move(capped));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(Mx(**r2, "nope.auth.test").status().code(), absl::StatusCode::kNotFound);

  auth.Stop();
  now_ms_ += 6'000;  // past the cap, within the SOA's 20 s
  EXPECT_EQ(Mx(r, "nope.auth.test").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*Mx(r, "h.auth.test"), IsEmpty());
  EXPECT_EQ(r.queries_sent(), 2u);
  EXPECT_EQ(Mx(**r2, "nope.auth.test").status().code(), absl::StatusCode::kUnavailable);

  now_ms_ += 15'000;  // 21 s: the SOA's TTL ran out
  EXPECT_EQ(Mx(r, "nope.auth.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.queries_sent(), 3u);
  auth.RemoveDir();
}

TEST_F(DnsResolverTest, ConcurrentLookupsShareOneQuery) {
  DnsResolver& r = MakeResolver();
  int answers = 0;
  for (int i = 0; i < 3; ++i) {
    r.LookupMx("example.test", [&](absl::StatusOr<std::vector<MxRecord>> mx) {
      ASSERT_TRUE(mx.ok());
      EXPECT_EQ(mx->size(), 2u);
      ++answers;
    });
  }
  EXPECT_EQ(r.pending(), 3u);
  ASSERT_TRUE(Drive(r, [&] { return answers == 3; }));
  EXPECT_EQ(r.queries_sent(), 1u);
}

TEST_F(DnsResolverTest, CallbackMayStartAnotherLookup) {
  DnsResolver& r = MakeResolver();
  std::optional<absl::StatusOr<std::vector<std::string>>> addrs;
  r.LookupMx("example.test", [&](absl::StatusOr<std::vector<MxRecord>> mx) {
    ASSERT_TRUE(mx.ok());
    r.LookupAddresses(mx->front().exchange,
                      [&](absl::StatusOr<std::vector<std::string>> a) { addrs = std::move(a); });
  });
  ASSERT_TRUE(Drive(r, [&] { return addrs.has_value(); }));
  ASSERT_TRUE(addrs->ok());
  EXPECT_THAT(**addrs, ElementsAre("2001:db8::1", "192.0.2.1"));
}

TEST_F(DnsResolverTest, ReportsSocketInterestToTheDriver) {
  DnsResolver& r = MakeResolver();
  std::vector<std::tuple<int, bool, bool>> changes;
  r.set_interest_callback(
      [&](int fd, bool read, bool write) { changes.emplace_back(fd, read, write); });
  bool done = false;
  r.LookupMx("example.test", [&](absl::StatusOr<std::vector<MxRecord>>) { done = true; });
  // The query is out: c-ares waits to read its UDP socket.
  ASSERT_FALSE(r.Fds().empty());
  EXPECT_TRUE(r.Fds()[0].read);
  ASSERT_FALSE(changes.empty());
  EXPECT_TRUE(std::get<1>(changes.front()));
  EXPECT_GT(r.NextTimeoutMs(), 0);
  EXPECT_LE(r.NextTimeoutMs(), 300);
  ASSERT_TRUE(Drive(r, [&] { return done; }));
  // With no query left c-ares closes the socket and says so.
  EXPECT_TRUE(r.Fds().empty());
  EXPECT_FALSE(std::get<1>(changes.back()));
  EXPECT_FALSE(std::get<2>(changes.back()));
}

TEST_F(DnsResolverTest, DestroyWithQueriesInFlightDropsCallbacks) {
  DnsResolver& r = MakeResolver();
  bool called = false;
  r.LookupMx("example.test", [&](absl::StatusOr<std::vector<MxRecord>>) { called = true; });
  r.LookupAddresses("mx1.example.test",
                    [&](absl::StatusOr<std::vector<std::string>>) { called = true; });
  resolver_.reset();
  EXPECT_FALSE(called);
}

// --- no working server (no dnsmasq needed, but the fixture starts one) ---

TEST_F(DnsResolverTest, ClosedPortIsUnavailable) {
  DnsResolverOptions options;
  options.servers = {dns_.server()};
  dns_.Stop();  // nothing listens on the port any more
  DnsResolver& r = MakeResolver(std::move(options));
  const int64_t start = NowMs();
  EXPECT_EQ(Mx(r, "example.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Addresses(r, "mx1.example.test").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(NowMs() - start, 2000);
}

TEST_F(DnsResolverTest, SilentServerTimesOutAsUnavailable) {
  // A bound UDP socket that never answers: the query can only time out.
  int sink = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(sink, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(sink, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  DnsResolverOptions options;
  options.servers = {absl::StrCat("127.0.0.1:", ntohs(addr.sin_port))};
  DnsResolver& r = MakeResolver(std::move(options));
  const int64_t start = NowMs();
  absl::StatusOr<std::vector<MxRecord>> mx = Mx(r, "example.test");
  const int64_t elapsed = NowMs() - start;
  close(sink);
  EXPECT_EQ(mx.status().code(), absl::StatusCode::kUnavailable) << mx.status();
  EXPECT_GE(elapsed, 280);  // the 300 ms timeout, one try
  EXPECT_LT(elapsed, 2000);
  EXPECT_TRUE(r.Fds().empty());
}

TEST(DnsResolverCreateTest, RejectsBadServers) {
  DnsResolverOptions options;
  options.servers = {"not-an-address:53"};
  EXPECT_EQ(DnsResolver::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.servers = {"127.0.0.1:53,127.0.0.2:53"};
  EXPECT_EQ(DnsResolver::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.servers = {"127.0.0.1:53", "[::1]:5353", "127.0.0.2"};
  EXPECT_TRUE(DnsResolver::Create(options).ok());
  options.servers.clear();  // /etc/resolv.conf
  EXPECT_TRUE(DnsResolver::Create(options).ok());
}

}  // namespace
}  // namespace postern::engine
