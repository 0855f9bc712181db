#include "engine/outbound/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <time.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace postern::engine {

namespace {

constexpr int kTypeA = 1;
constexpr int kTypeCname = 5;
constexpr int kTypeSoa = 6;
constexpr int kTypeMx = 15;
constexpr int kTypeAaaa = 28;
constexpr int kClassIn = 1;
constexpr int kMaxCnameChain = 8;

int64_t MonotonicNowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

const char* TypeName(int type) {
  switch (type) {
    case kTypeA:
      return "A";
    case kTypeAaaa:
      return "AAAA";
    case kTypeMx:
      return "MX";
    default:
      return "?";
  }
}

// Lower-case without the trailing dot; the root is ".".
std::string NormalizeName(std::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  if (n.size() > 1 && n.back() == '.') n.pop_back();
  if (n.empty()) n = ".";
  return n;
}

// RFC 1035 length limits; c-ares would refuse worse names anyway, but
// checking here gives a clear permanent error instead of a query.
bool ValidQueryName(const std::string& name) {
  if (name == "." || name.size() > 253 || name.front() == '.') return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (++label > 63 || c == '\0' || c == ' ') {
      return false;
    }
  }
  return label > 0;
}

std::optional<std::string> IpLiteral(std::string_view host) {
  std::string s(host);
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  for (int af : {AF_INET6, AF_INET}) {
    if (inet_pton(af, s.c_str(), buf) == 1 && inet_ntop(af, buf, out, sizeof(out)) != nullptr) {
      return std::string(out);
    }
  }
  return std::nullopt;
}

uint16_t U16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t U32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// A name at `p` inside the message, normalized; nullopt if malformed.
std::optional<std::string> ExpandName(const unsigned char* p, const unsigned char* abuf, int alen,
                                      long* consumed) {
  char* raw = nullptr;
  long len = 0;
  if (ares_expand_name(p, abuf, alen, &raw, &len) != ARES_SUCCESS) return std::nullopt;
  std::string name = NormalizeName(raw);
  ares_free_string(raw);
  if (consumed != nullptr) *consumed = len;
  return name;
}

struct Record {
  std::string name;
  int type = 0;
  int64_t ttl_ms = 0;
  const unsigned char* rdata = nullptr;
  int rdlen = 0;
  bool authority = false;
};

struct Message {
  std::string qname;
  std::vector<Record> records;
};

// Splits a reply into its question name and answer/authority records.
std::optional<Message> ParseMessage(const unsigned char* abuf, int alen) {
  if (abuf == nullptr || alen < 12) return std::nullopt;
  const int qdcount = U16(abuf + 4);
  const int ancount = U16(abuf + 6);
  const int nscount = U16(abuf + 8);
  if (qdcount != 1) return std::nullopt;
  const unsigned char* p = abuf + 12;
  const unsigned char* end = abuf + alen;
  Message m;
  long len = 0;
  std::optional<std::string> qname = ExpandName(p, abuf, alen, &len);
  if (!qname || end - (p + len) < 4) return std::nullopt;
  m.qname = *qname;
  p += len + 4;
  for (int i = 0; i < ancount + nscount; ++i) {
    std::optional<std::string> name = ExpandName(p, abuf, alen, &len);
    if (!name || end - (p + len) < 10) return std::nullopt;
    p += len;
    Record r;
    r.name = *name;
    r.type = U16(p);
    const int rclass = U16(p + 2);
    // RFC 2181 8: a TTL with the top bit set counts as zero.
    const uint32_t ttl = U32(p + 4);
    r.ttl_ms = ttl > 0x7fffffffu ? 0 : int64_t{ttl} * 1000;
    r.rdlen = U16(p + 8);
    p += 10;
    if (end - p < r.rdlen) return std::nullopt;
    r.rdata = p;
    r.authority = i >= ancount;
    p += r.rdlen;
    if (rclass == kClassIn) m.records.push_back(std::move(r));
  }
  return m;
}

}  // namespace

struct DnsResolver::Answer {
  enum Kind { kData, kNoData, kNxDomain, kTemporary, kBadName };
  Kind kind = kTemporary;
  std::vector<MxRecord> mx;
  std::vector<std::string> addresses;
  std::string error;   // kTemporary, kBadName
  int64_t ttl_ms = 0;  // how long it may be cached; 0: not at all
};

struct DnsResolver::CacheEntry {
  Answer answer;
  int64_t expires_ms = 0;
};

struct DnsResolver::QueryContext {
  DnsResolver* resolver;
  Key key;
};

namespace {

// The negative-caching time of RFC 2308 3: min(SOA TTL, SOA MINIMUM).
int64_t NegativeTtlMs(const Message& m, const DnsResolverOptions& options) {
  int64_t ttl = options.default_negative_ttl_ms;
  for (const Record& r : m.records) {
    if (!r.authority || r.type != kTypeSoa || r.rdlen < 22) continue;
    const int64_t minimum = int64_t{U32(r.rdata + r.rdlen - 4) & 0x7fffffffu} * 1000;
    ttl = std::min(r.ttl_ms, minimum);
    break;
  }
  return std::min(ttl, options.max_negative_ttl_ms);
}

// Fills `answer` from a NOERROR reply: the records of `type` owned by the
// question name or an alias reached through CNAMEs in the answer section.
void ParseData(int type, const Message& m, const unsigned char* abuf, int alen,
               const DnsResolverOptions& options, DnsResolver::Answer* answer) {
  std::set<std::string> names = {m.qname};
  int64_t ttl = options.max_ttl_ms;
  for (int round = 0; round < kMaxCnameChain; ++round) {
    bool grew = false;
    for (const Record& r : m.records) {
      if (r.authority || r.type != kTypeCname || !names.count(r.name)) continue;
      std::optional<std::string> target = ExpandName(r.rdata, abuf, alen, nullptr);
      if (target && names.insert(*target).second) {
        ttl = std::min(ttl, r.ttl_ms);
        grew = true;
      }
    }
    if (!grew) break;
  }
  bool found = false;
  for (const Record& r : m.records) {
    if (r.authority || r.type != type || !names.count(r.name)) continue;
    char text[INET6_ADDRSTRLEN];
    if (type == kTypeA && r.rdlen == 4) {
      inet_ntop(AF_INET, r.rdata, text, sizeof(text));
      answer->addresses.push_back(text);
    } else if (type == kTypeAaaa && r.rdlen == 16) {
      inet_ntop(AF_INET6, r.rdata, text, sizeof(text));
      answer->addresses.push_back(text);
    } else if (type == kTypeMx && r.rdlen >= 3) {
      std::optional<std::string> exchange = ExpandName(r.rdata + 2, abuf, alen, nullptr);
      if (!exchange) continue;
      answer->mx.push_back({U16(r.rdata), *exchange});
    } else {
      continue;
    }
    found = true;
    ttl = std::min(ttl, r.ttl_ms);
  }
  if (found) {
    answer->kind = DnsResolver::Answer::kData;
    answer->ttl_ms = ttl;
    std::stable_sort(
        answer->mx.begin(), answer->mx.end(),
        [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
  } else {
    answer->kind = DnsResolver::Answer::kNoData;
    answer->ttl_ms = NegativeTtlMs(m, options);
  }
}

DnsResolver::Answer MakeAnswer(int type, int status, const unsigned char* abuf, int alen,
                               const DnsResolverOptions& options) {
  DnsResolver::Answer answer;
  std::optional<Message> m;
  if (status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND) {
    m = ParseMessage(abuf, alen);
    if (!m) {
      answer.error = "malformed DNS reply";
      return answer;
    }
  }
  switch (status) {
    case ARES_SUCCESS:
      ParseData(type, *m, abuf, alen, options, &answer);
      break;
    case ARES_ENODATA:
      answer.kind = DnsResolver::Answer::kNoData;
      answer.ttl_ms = NegativeTtlMs(*m, options);
      break;
    case ARES_ENOTFOUND:
      answer.kind = DnsResolver::Answer::kNxDomain;
      answer.ttl_ms = NegativeTtlMs(*m, options);
      break;
    case ARES_EBADNAME:
      answer.kind = DnsResolver::Answer::kBadName;
      answer.error = ares_strerror(status);
      break;
    default:  // SERVFAIL, REFUSED, timeout, connection refused, ...
      answer.error = ares_strerror(status);
      break;
  }
  return answer;
}

absl::Status AnswerError(const DnsResolver::Answer& a, int type, const std::string& name) {
  switch (a.kind) {
    case DnsResolver::Answer::kNxDomain:
      return absl::NotFoundError(absl::StrCat(name, ": no such domain (NXDOMAIN)"));
    case DnsResolver::Answer::kBadName:
      return absl::InvalidArgumentError(absl::StrCat(name, ": malformed name"));
    case DnsResolver::Answer::kTemporary:
      return absl::UnavailableError(
          absl::StrCat(name, " ", TypeName(type), ": temporary DNS failure: ", a.error));
    default:
      return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<DnsResolver>> DnsResolver::Create(DnsResolverOptions options) {
  static const int library_status = ares_library_init(ARES_LIB_INIT_ALL);
  if (library_status != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("c-ares init: ", ares_strerror(library_status)));
  }
  if (!options.now_ms) options.now_ms = MonotonicNowMs;
  if (options.timeout_ms <= 0 || options.tries <= 0) {
    return absl::InvalidArgumentError("DNS timeout and tries must be positive");
  }
  std::unique_ptr<DnsResolver> resolver(new DnsResolver(std::move(options)));
  const DnsResolverOptions& opts = resolver->options_;

  ares_options ares{};
  ares.flags = ARES_FLAG_NOSEARCH;
  ares.timeout = opts.timeout_ms;
  ares.tries = opts.tries;
  ares.sock_state_cb = &DnsResolver::OnSocketState;
  ares.sock_state_cb_data = resolver.get();
  const int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  ares_channel channel = nullptr;
  if (int rc = ares_init_options(&channel, &ares, mask); rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("c-ares channel: ", ares_strerror(rc)));
  }
  resolver->channel_ = channel;
  if (!opts.servers.empty()) {
    for (const std::string& server : opts.servers) {
      if (server.empty() || server.find(',') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("DNS server \"", server, "\""));
      }
    }
    std::string csv = absl::StrJoin(opts.servers, ",");
    if (int rc = ares_set_servers_ports_csv(channel, csv.c_str()); rc != ARES_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrCat("DNS servers \"", csv, "\": ", ares_strerror(rc)));
    }
  }
  return resolver;
}

DnsResolver::DnsResolver(DnsResolverOptions options) : options_(std::move(options)) {}

DnsResolver::~DnsResolver() {
  // ares_destroy() ends every query with ARES_EDESTRUCTION and closes the
  // sockets; neither may reach the owner, which is being torn down.
  destroying_ = true;
  interest_callback_ = nullptr;
  if (channel_ != nullptr) ares_destroy(channel_);
}

void DnsResolver::LookupMx(std::string_view domain, MxCallback callback) {
  ++pending_;
  std::string name = NormalizeName(domain);
  if (!ValidQueryName(name)) {
    Complete([callback = std::move(callback), name]() {
      callback(absl::InvalidArgumentError(absl::StrCat("\"", name, "\": malformed domain name")));
    });
    return;
  }
  Resolve(kTypeMx, name, [this, name, callback = std::move(callback)](const Answer& a) mutable {
    absl::StatusOr<std::vector<MxRecord>> result;
    if (absl::Status error = AnswerError(a, kTypeMx, name); !error.ok()) {
      result = error;
    } else {
      result = a.mx;  // kNoData: an empty list
    }
    Complete([callback = std::move(callback), result = std::move(result)]() mutable {
      callback(std::move(result));
    });
  });
}

void DnsResolver::LookupAddresses(std::string_view host, AddressCallback callback) {
  ++pending_;
  if (std::optional<std::string> ip = IpLiteral(host)) {
    Complete(
        [callback = std::move(callback), ip = *ip]() { callback(std::vector<std::string>{ip}); });
    return;
  }
  std::string name = NormalizeName(host);
  if (!ValidQueryName(name)) {
    Complete([callback = std::move(callback), name]() {
      callback(absl::InvalidArgumentError(absl::StrCat("\"", name, "\": malformed host name")));
    });
    return;
  }
  struct Join {
    std::string name;
    AddressCallback callback;
    std::optional<Answer> v6, v4;
  };
  auto join = std::make_shared<Join>();
  join->name = name;
  join->callback = std::move(callback);
  auto finish = [this, join]() {
    if (!join->v6 || !join->v4) return;
    const Answer& first = options_.ipv6_first ? *join->v6 : *join->v4;
    const Answer& second = options_.ipv6_first ? *join->v4 : *join->v6;
    absl::StatusOr<std::vector<std::string>> result;
    std::vector<std::string> addresses = first.addresses;
    addresses.insert(addresses.end(), second.addresses.begin(), second.addresses.end());
    if (!addresses.empty()) {
      result = std::move(addresses);  // a family's temporary failure is tolerated
    } else if (join->v6->kind == Answer::kTemporary) {
      result = AnswerError(*join->v6, kTypeAaaa, join->name);
    } else if (join->v4->kind == Answer::kTemporary) {
      result = AnswerError(*join->v4, kTypeA, join->name);
    } else if (join->v6->kind == Answer::kNxDomain || join->v4->kind == Answer::kNxDomain) {
      Answer nxdomain;
      nxdomain.kind = Answer::kNxDomain;
      result = AnswerError(nxdomain, kTypeA, join->name);
    } else if (join->v6->kind == Answer::kBadName) {
      result = AnswerError(*join->v6, kTypeAaaa, join->name);
    } else if (join->v4->kind == Answer::kBadName) {
      result = AnswerError(*join->v4, kTypeA, join->name);
    } else {
      result = std::vector<std::string>{};  // the name exists, without addresses
    }
    Complete([join, result = std::move(result)]() mutable { join->callback(std::move(result)); });
  };
  Resolve(kTypeAaaa, name, [join, finish](const Answer& a) {
    join->v6 = a;
    finish();
  });
  Resolve(kTypeA, name, [join, finish](const Answer& a) {
    join->v4 = a;
    finish();
  });
}

void DnsResolver::Resolve(int type, const std::string& name, Waiter waiter) {
  Key key{type, name};
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (it->second->expires_ms > options_.now_ms()) {
      waiter(it->second->answer);
      return;
    }
    cache_.erase(it);
  }
  auto [it, started] = in_flight_.try_emplace(key);
  it->second.push_back(std::move(waiter));
  if (!started) return;  // joins the query in flight
  ++queries_sent_;
  // The context is freed in OnQuery, which c-ares calls exactly once (from
  // inside ares_query itself if the query fails at once).
  auto* context = new QueryContext{this, std::move(key)};
  ares_query(channel_, name.c_str(), kClassIn, type, &DnsResolver::OnQuery, context);
}

void DnsResolver::OnQuery(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryContext> context(static_cast<QueryContext*>(arg));
  DnsResolver* self = context->resolver;
  if (self->destroying_ || status == ARES_EDESTRUCTION) return;
  self->OnAnswer(context.get(), status, abuf, alen);
}

void DnsResolver::OnAnswer(QueryContext* context, int status, const unsigned char* abuf, int alen) {
  const Key& key = context->key;
  Answer answer = MakeAnswer(key.first, status, abuf, alen, options_);
  if (answer.kind != Answer::kTemporary && answer.kind != Answer::kBadName) Store(key, answer);
  auto it = in_flight_.find(key);
  if (it == in_flight_.end()) return;
  std::vector<Waiter> waiters = std::move(it->second);
  in_flight_.erase(it);
  for (Waiter& waiter : waiters) waiter(answer);
}

void DnsResolver::Store(const Key& key, const Answer& answer) {
  const int64_t ttl = std::min(answer.ttl_ms, options_.max_ttl_ms);
  if (ttl <= 0 || options_.max_cache_entries == 0) return;
  const int64_t now = options_.now_ms();
  if (cache_.size() >= options_.max_cache_entries && !cache_.count(key)) {
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second->expires_ms <= now ? cache_.erase(it) : std::next(it);
    }
    // Still full of live entries: drop one rather than grow without bound.
    if (cache_.size() >= options_.max_cache_entries) cache_.erase(cache_.begin());
  }
  auto entry = std::make_unique<CacheEntry>();
  entry->answer = answer;
  entry->expires_ms = now + ttl;
  cache_[key] = std::move(entry);
}

void DnsResolver::Complete(std::function<void()> callback) {
  completed_.push_back(std::move(callback));
}

void DnsResolver::RunCompleted() {
  // Callbacks may queue more (a cache hit); those wait for the next round.
  std::deque<std::function<void()>> ready;
  ready.swap(completed_);
  for (std::function<void()>& callback : ready) {
    --pending_;
    callback();
  }
}

void DnsResolver::OnSocketState(void* data, int fd, int readable, int writable) {
  auto* self = static_cast<DnsResolver*>(data);
  if (readable || writable) {
    self->fds_[fd] = FdInterest{fd, readable != 0, writable != 0};
  } else {
    self->fds_.erase(fd);
  }
  if (self->interest_callback_) self->interest_callback_(fd, readable != 0, writable != 0);
}

std::vector<DnsResolver::FdInterest> DnsResolver::Fds() const {
  std::vector<FdInterest> out;
  out.reserve(fds_.size());
  for (const auto& [fd, interest] : fds_) out.push_back(interest);
  return out;
}

void DnsResolver::ProcessFd(int fd, bool readable, bool writable) {
  ares_process_fd(channel_, readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
  RunCompleted();
}

int64_t DnsResolver::NextTimeoutMs() const {
  if (!completed_.empty()) return 0;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) return -1;
  // Round up: waking before the deadline would only spin.
  return int64_t{tv.tv_sec} * 1000 + (tv.tv_usec + 999) / 1000;
}

void DnsResolver::ProcessTimeouts() {
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  RunCompleted();
}

}  // namespace postern::engine
