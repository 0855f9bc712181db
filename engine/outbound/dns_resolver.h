// DnsResolver: MX and address lookups for outbound delivery, on c-ares,
// driven by the owner's event loop. It never blocks and owns no thread.
//
// Driving it: c-ares opens UDP/TCP sockets to the servers; the driver
// watches them and reports readiness.
//  - Fds() lists the sockets and whether c-ares wants to read or write each;
//    set_interest_callback() reports every change (read and write both false:
//    the socket is closed and must be forgotten before the number is reused).
//    The interest callback may run inside any resolver call, Lookup*()
//    included; it must only record the change.
//  - When poll/io_uring reports a socket ready, call ProcessFd(fd, readable,
//    writable). Report an error or hang-up as readable, so c-ares reads and
//    sees it.
//  - NextTimeoutMs(): how long the driver may wait before calling
//    ProcessTimeouts(); -1 when nothing is pending. Ask again after every
//    Lookup*() and every Process*() call: a new lookup brings a new deadline.
//
// Callbacks: a lookup's callback runs exactly once, always from inside
// ProcessFd() or ProcessTimeouts(), never from inside Lookup*() (not even for
// a cache hit: that result is queued and NextTimeoutMs() returns 0), so a
// caller never re-enters its own code. A callback may start new lookups. It
// must not destroy the resolver. Destroying the resolver drops pending
// callbacks without running them.
//
// Results:
//  - LookupMx: the MX records, sorted by preference. NOERROR with no MX
//    records (the domain exists): an empty list. NXDOMAIN: kNotFound.
//  - LookupAddresses: A and AAAA are both queried and merged, IPv6 first
//    unless options say otherwise; text form ("192.0.2.1", "2001:db8::1").
//    An IP address as host is returned as itself with no query. Both answers
//    NOERROR without records: an empty list. No address and a family
//    NXDOMAIN: kNotFound. If one family fails temporarily the other's
//    addresses are still returned.
//  - SERVFAIL, REFUSED, a timeout, an unreachable server: kUnavailable.
//  - A malformed name: kInvalidArgument.
//
// Cache: answers are cached by (type, name) for their TTL (the smallest in
// the answer, CNAMEs included; at most max_ttl_ms). NXDOMAIN and "no data"
// are cached for min(SOA TTL, SOA minimum, max_negative_ttl_ms) (RFC 2308);
// without an SOA in the answer for default_negative_ttl_ms. Temporary
// failures are not cached. Concurrent lookups of the same (type, name) share
// one query. Expiry uses options.now_ms, so tests can move time.
//
// Threading: single-threaded; create, use and destroy it on one thread (the
// worker's loop). Each worker has its own resolver and cache.
#ifndef POSTERN_ENGINE_OUTBOUND_DNS_RESOLVER_H_
#define POSTERN_ENGINE_OUTBOUND_DNS_RESOLVER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/outbound/next_hop.h"

struct ares_channeldata;  // <ares.h>: ares_channel is a pointer to it

namespace postern::engine {

struct DnsResolverOptions {
  // "ip:port", "[ipv6]:port" or "ip" (port 53). Empty: /etc/resolv.conf.
  std::vector<std::string> servers;
  int timeout_ms = 2000;  // first try; c-ares doubles it for later rounds
  int tries = 2;          // per server
  bool ipv6_first = true;
  int64_t max_ttl_ms = 24 * 3600 * 1000;
  int64_t max_negative_ttl_ms = 5 * 60 * 1000;
  int64_t default_negative_ttl_ms = 60 * 1000;
  size_t max_cache_entries = 10000;
  // Monotonic milliseconds for the cache; default CLOCK_MONOTONIC.
  std::function<int64_t()> now_ms;
};

class DnsResolver {
 public:
  using MxCallback = std::function<void(absl::StatusOr<std::vector<MxRecord>>)>;
  using AddressCallback = std::function<void(absl::StatusOr<std::vector<std::string>>)>;
  using InterestCallback = std::function<void(int fd, bool read, bool write)>;

  struct FdInterest {
    int fd;
    bool read;
    bool write;
  };

  // InvalidArgument for a server that does not parse; Internal if c-ares
  // cannot start (no /etc/resolv.conf is not an error: c-ares then asks
  // 127.0.0.1).
  static absl::StatusOr<std::unique_ptr<DnsResolver>> Create(DnsResolverOptions options);

  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  void LookupMx(std::string_view domain, MxCallback callback);
  void LookupAddresses(std::string_view host, AddressCallback callback);

  // --- for the driver (contract at the top) ---
  std::vector<FdInterest> Fds() const;
  void set_interest_callback(InterestCallback callback) {
    interest_callback_ = std::move(callback);
  }
  void ProcessFd(int fd, bool readable, bool writable);
  int64_t NextTimeoutMs() const;
  void ProcessTimeouts();

  // DNS queries sent (cache misses not joined to one in flight); for
  // metrics and tests.
  uint64_t queries_sent() const { return queries_sent_; }
  // Lookups whose callback has not run yet.
  size_t pending() const { return pending_; }

  // Internal: one query's answer, public for the .cc's free functions.
  struct Answer;

 private:
  struct CacheEntry;
  struct QueryContext;
  using Key = std::pair<int, std::string>;  // (DNS type, normalized name)
  using Waiter = std::function<void(const Answer&)>;

  explicit DnsResolver(DnsResolverOptions options);

  // Runs `waiter` with the cached answer, or joins/starts a query.
  void Resolve(int type, const std::string& name, Waiter waiter);
  void OnAnswer(QueryContext* context, int status, const unsigned char* abuf, int alen);
  void Store(const Key& key, const Answer& answer);
  void Complete(std::function<void()> callback);  // queue for delivery
  void RunCompleted();
  static void OnSocketState(void* data, int fd, int readable, int writable);
  static void OnQuery(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  DnsResolverOptions options_;
  ares_channeldata* channel_ = nullptr;
  std::map<int, FdInterest> fds_;
  InterestCallback interest_callback_;
  std::map<Key, std::vector<Waiter>> in_flight_;
  std::map<Key, std::unique_ptr<CacheEntry>> cache_;
  std::deque<std::function<void()>> completed_;
  uint64_t queries_sent_ = 0;
  size_t pending_ = 0;
  bool destroying_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_OUTBOUND_DNS_RESOLVER_H_
