// postern-loadgen: an SMTP load generator for Postern's benchmarks. It
// opens many connections to one target and sends generated mail over
// plaintext, STARTTLS or implicit TLS, closed loop (as fast as replies come)
// or open loop (a fixed timetable, latency measured from each message's
// intended start, so a stalled server cannot hide its stall: coordinated
// omission corrected). See bench/README.md.
//
// It is the engine's own client: engine::SmtpClientSession speaks SMTP,
// engine::Stream moves the bytes on an engine::IoRing and runs TLS (BoringSSL,
// session resumption from the TlsClientContext's cache). One thread, one
// ring; every connection is a Stream plus the glue to its session, driven by
// ring completions. Blocking calls: resolving --target once at start, and the
// output at the end.
//
// Links liburing and BoringSSL, never gRPC or OpenSSL 3
// (tests/test_loadgen.py checks the binary).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "bench/flag_parser.h"
#include "bench/loadgen_message.h"
#include "bench/loadgen_stats.h"
#include "bench/stop_signals.h"
#include "bench/tool_main.h"
#include "engine/net/io_ring.h"
#include "engine/net/method_op.h"
#include "engine/net/socket_address.h"
#include "engine/net/stream.h"
#include "engine/outbound/smtp_client_session.h"
#include "engine/tls/tls_client_context.h"
#include "engine/tls/tls_session.h"

namespace postern::bench {
namespace {

using engine::ConnectionOutcome;
using engine::IoRing;
using engine::MessageResult;
using engine::SmtpClientOptions;
using engine::SmtpClientSession;
using engine::Stream;
using engine::StreamEnd;
using engine::TlsClientContext;

constexpr char kUsage[] =
    "usage: postern-loadgen [flags]\n"
    "  --target HOST:PORT          the SMTP server (default 127.0.0.1:2526)\n"
    "  --mode plain|starttls|implicit  STARTTLS is required in starttls mode\n"
    "  --tls-version 1.2|1.3       use only this TLS version (default: 1.2 or 1.3)\n"
    "  --resume on|off             TLS session resumption (default on)\n"
    "  --sni NAME                  SNI and session cache key (default: the target\n"
    "                              host; \"localhost\" for an IP address)\n"
    "  --connections N             concurrent connections (default 10)\n"
    "  --messages-per-connection N then QUIT and reconnect; 1 = a new TCP (+TLS)\n"
    "                              connection per message (default 0: unlimited)\n"
    "  --recipients N              recipients per message (default 1)\n"
    "  --size BYTES                message size (default 1024; k and m suffixes)\n"
    "  --size-mix W:BYTES,...      weighted sizes, e.g. 60:4096,30:40960,10:409600\n"
    "  --pipelining on|off         use PIPELINING when offered (default on)\n"
    "  --chunking on|off           use BDAT when CHUNKING is offered (default on)\n"
    "  --from ADDR --to ADDR       envelope; %d in --to becomes a counter\n"
    "  --helo NAME                 EHLO name (default loadgen.test)\n"
    "  --rate MSGS_PER_SEC         open loop on a fixed timetable (default: closed)\n"
    "  --messages N                stop after N messages (default 1000 unless\n"
    "                              --duration is given)\n"
    "  --duration SECONDS          stop after this long\n"
    "  --timeout SECONDS           connect and reply timeout (default 30)\n"
    "  --seed N                    size draws (default 1)\n"
    "  --json                      results as one JSON object on stdout (the\n"
    "                              table goes to stderr)\n"
    "  --quiet                     no progress line\n";

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kRecvBuffers = 1024;
constexpr unsigned kRecvBufferSize = 16 * 1024;
constexpr int64_t kTickNs = 100'000'000;
constexpr int64_t kProgressNs = 1'000'000'000;
// After a failed connect, new connections wait this long, so a dead target
// is not hammered in a tight loop.
constexpr int64_t kConnectBackoffNs = 10'000'000;

enum class Mode { kPlain, kStartTls, kImplicit };

struct Flags {
  std::string target = "127.0.0.1:2526";
  Mode mode = Mode::kPlain;
  std::string tls_version;  // "", "1.2" or "1.3"
  bool resume = true;
  std::optional<std::string> sni;
  uint64_t connections = 10;
  uint64_t messages_per_connection = 0;
  MessageOptions message;
  bool pipelining = true;
  bool chunking = true;
  std::string helo = "loadgen.test";
  double rate = 0;
  uint64_t messages = 0;  // 0: unlimited (only with --duration)
  double duration_s = 0;
  double timeout_s = 30;
  uint64_t seed = 1;
  bool json = false;
  bool quiet = false;
};

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t Micros(int64_t ns) { return ns <= 0 ? 0 : static_cast<uint64_t>(ns / 1000); }

void SetTimespec(int64_t ns, __kernel_timespec* ts) {
  if (ns < 0) ns = 0;
  ts->tv_sec = ns / 1'000'000'000;
  ts->tv_nsec = ns % 1'000'000'000;
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  bool messages_given = false;
  FlagParser parser(argc, argv);
  while (parser.Next()) {
    const std::string& name = parser.name();
    if (name == "json" || name == "quiet") {
      if (absl::Status st = parser.NoValue(); !st.ok()) return st;
      (name == "json" ? flags.json : flags.quiet) = true;
      continue;
    }
    if (absl::Status st = parser.TakeValue(); !st.ok()) return st;
    const std::string& value = parser.value();
    auto count = [&](uint64_t* out, uint64_t min, uint64_t max) -> absl::Status {
      if (!absl::SimpleAtoi(value, out) || *out < min || *out > max) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a number from ", min, " to ", max));
      }
      return absl::OkStatus();
    };
    auto seconds = [&](double* out) -> absl::Status {
      if (!absl::SimpleAtod(value, out) || !(*out > 0) || *out > 1e7) {
        return absl::InvalidArgumentError("--" + name + " needs a number > 0");
      }
      return absl::OkStatus();
    };
    auto on_off = [&](bool* out) -> absl::Status {
      absl::StatusOr<bool> on = parser.Choice<bool>({{"on", true}, {"off", false}});
      if (on.ok()) *out = *on;
      return on.status();
    };
    absl::Status st;
    if (name == "target") {
      flags.target = value;
    } else if (name == "mode") {
      absl::StatusOr<Mode> mode = parser.Choice<Mode>(
          {{"plain", Mode::kPlain}, {"starttls", Mode::kStartTls}, {"implicit", Mode::kImplicit}});
      if (!mode.ok()) return mode.status();
      flags.mode = *mode;
    } else if (name == "tls-version") {
      st = parser.CheckChoice({"1.2", "1.3"});
      flags.tls_version = value;
    } else if (name == "resume") {
      st = on_off(&flags.resume);
    } else if (name == "sni") {
      flags.sni = value;
    } else if (name == "connections") {
      st = count(&flags.connections, 1, 100000);
    } else if (name == "messages-per-connection") {
      st = count(&flags.messages_per_connection, 0, UINT64_MAX);
    } else if (name == "recipients") {
      uint64_t n = 0;
      st = count(&n, 1, 1000);
      flags.message.recipients = static_cast<int>(n);
    } else if (name == "size") {
      absl::StatusOr<uint64_t> n = ParseByteCount(value);
      if (!n.ok())
        return absl::InvalidArgumentError("--size: " + std::string(n.status().message()));
      flags.message.sizes = SizeMix::Fixed(*n);
    } else if (name == "size-mix") {
      absl::StatusOr<SizeMix> mix = ParseSizeMix(value);
      if (!mix.ok()) {
        return absl::InvalidArgumentError("--size-mix: " + std::string(mix.status().message()));
      }
      flags.message.sizes = std::move(*mix);
    } else if (name == "pipelining") {
      st = on_off(&flags.pipelining);
    } else if (name == "chunking") {
      st = on_off(&flags.chunking);
    } else if (name == "from") {
      flags.message.from = value;
    } else if (name == "to") {
      flags.message.to = value;
    } else if (name == "helo") {
      flags.helo = value;
    } else if (name == "rate") {
      st = seconds(&flags.rate);
    } else if (name == "messages") {
      st = count(&flags.messages, 1, UINT64_MAX);
      messages_given = true;
    } else if (name == "duration") {
      st = seconds(&flags.duration_s);
    } else if (name == "timeout") {
      st = seconds(&flags.timeout_s);
    } else if (name == "seed") {
      st = count(&flags.seed, 0, UINT64_MAX);
    } else {
      return parser.Unknown();
    }
    if (!st.ok()) return st;
  }
  if (!parser.status().ok()) return parser.status();
  // Always bounded.
  if (!messages_given && flags.duration_s == 0) flags.messages = 1000;
  if (flags.mode == Mode::kPlain && (!flags.tls_version.empty())) {
    return absl::InvalidArgumentError("--tls-version needs --mode starttls or implicit");
  }
  if (flags.helo.empty()) return absl::InvalidArgumentError("--helo is empty");
  return flags;
}

// HOST:PORT or [V6]:PORT; a host name is resolved once, here.
absl::StatusOr<engine::SocketAddress> ResolveTarget(const std::string& target,
                                                    std::string* host_out) {
  std::string host;
  std::string port;
  if (!target.empty() && target.front() == '[') {
    const size_t close = target.find(']');
    if (close == std::string::npos || close + 1 >= target.size() || target[close + 1] != ':') {
      return absl::InvalidArgumentError("--target: expected [ipv6]:port");
    }
    host = target.substr(1, close - 1);
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos)
      return absl::InvalidArgumentError("--target: expected host:port");
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
  }
  *host_out = host;
  if (TlsClientContext::IsIpLiteral(host)) return engine::ParseSocketAddress(target);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::NotFoundError(absl::StrCat("--target ", target, ": ", gai_strerror(rc)));
  }
  engine::SocketAddress out;
  std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
  out.length = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  return out;
}

// One message to send: its number and when it should have started.
struct Ticket {
  uint64_t seq = 0;
  int64_t intended_ns = 0;
};

// When each phase of one message happened (0: not reached).
struct MessageTimes {
  int64_t intended_ns = 0;
  int64_t mail_ns = 0;        // MAIL written
  int64_t data_start_ns = 0;  // the content begins (after 354, or BDAT)
  int64_t data_end_ns = 0;    // the last content octet handed to the kernel
};

class Loadgen;

// One client connection: a Stream and the glue to its SmtpClientSession.
// Owned by the Loadgen; closing starts with the stream and the Loadgen
// deletes the connection once the stream is Finished(). Loop thread only.
class Connection : private engine::StreamHandler {
 public:
  Connection(Loadgen* lg, TlsClientContext* tls_context);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects; `ticket` is the first message.
  void Start(Ticket ticket);
  // The next message, from inside Drive() (Loadgen::OnReady).
  void SetTicket(Ticket ticket) { ticket_ = ticket; }
  // An idle connection takes a message.
  void Assign(Ticket ticket);
  // An idle connection says QUIT.
  void Quit();
  // Timeouts.
  void Tick(int64_t now);
  // Gives up now; a message in flight fails. The end counts as a connection
  // error under `label`, unless it is empty.
  void Abort(const std::string& label);
  void Close() { stream_.Close(); }

  bool Finished() const { return stream_.Finished(); }
  bool idle() const { return idle_; }
  // True the first time: the connection stops counting against
  // --connections.
  bool Uncount() { return std::exchange(counted_, false); }
  uint64_t messages_done() const { return messages_done_; }
  TlsClientContext* tls_context() const { return tls_context_; }

 private:
  // StreamHandler
  void OnConnected(int res) override;
  void OnStreamData(std::string_view data) override;
  void OnStreamEnd(StreamEnd how, std::string_view detail) override;
  void OnTlsEstablished() override;
  void OnTlsFailed(std::string_view reason) override;
  void OnSendFailed(int err) override;
  void OnWireBytes(size_t n) override;
  void OnStreamClosing() override;
  void OnCompletionDone() override;

  void StartTls();
  // The handshake failed: the end of an implicit TLS connection; with
  // STARTTLS the session decides (kFailed).
  void TlsFailed(std::string_view reason);
  void Drive();
  // Begins the ticket's transaction; false if the session refused it.
  bool BeginMessage();
  void FinishMessage(const std::optional<MessageResult>& result);
  void Refresh() { deadline_ns_ = NowNs() + timeout_ns_; }
  std::string ErrorLabel() const;

  Loadgen* lg_;
  TlsClientContext* tls_context_;  // from the Loadgen's pool; null in plain mode
  int64_t timeout_ns_;
  Stream stream_;
  std::unique_ptr<SmtpClientSession> session_;
  std::optional<Ticket> ticket_;
  engine::OutboundMessage message_;
  std::string marker_;  // the first line of message_.body: finds the content in out()
  MessageTimes times_;
  bool in_message_ = false;
  bool data_end_pending_ = false;
  uint64_t messages_done_ = 0;

  int64_t connect_start_ns_ = 0;
  int64_t tls_start_ns_ = 0;
  int64_t deadline_ns_ = 0;  // 0: none
  std::string lost_label_ = "closed";

  bool idle_ = false;
  bool counted_ = true;
  bool quitting_ = false;
  bool ended_ = false;  // the SMTP session is over; only flushing remains
};

// The run: connections, the schedule, the counters.
class Loadgen {
 public:
  explicit Loadgen(Flags flags) : flags_(std::move(flags)), factory_(flags_.message, flags_.seed) {}

  absl::Status Init();
  // Runs until the bound is reached and every connection has ended.
  absl::Status Run();
  // Prints the results; returns the exit status.
  int Report();

  // For connections.
  IoRing* ring() { return &ring_; }
  const Flags& flags() const { return flags_; }
  const engine::SocketAddress& address() const { return address_; }
  const std::string& sni() const { return sni_; }
  MessageFactory* factory() { return &factory_; }
  LoadgenTotals* totals() { return &totals_; }
  SmtpClientOptions session_options() const { return session_options_; }

  // A connection reached kReady with nothing to do: it gets a message, says
  // QUIT, or waits idle. True when it got a message or QUIT.
  bool OnReady(Connection* c);
  // The connection no longer counts against --connections (it quits or
  // closes).
  void Deactivate(Connection* c);
  void OnConnected() { ever_connected_ = true; }
  void OnConnectFailed();
  void OnClosing(Connection* c);
  void OnMessageDone(const MessageResult& result, const engine::OutboundMessage& message,
                     const MessageTimes& times);
  void OnNotSent(const absl::Status& why);
  void CountError(const std::string& label) { ++totals_.connection_errors[label]; }

 private:
  using Op = engine::MethodOp<Loadgen>;

  bool open_loop() const { return flags_.rate > 0; }
  int64_t Period() const { return static_cast<int64_t>(1e9 / flags_.rate); }
  bool HasTicket() const;
  Ticket ClaimTicket();
  // No further ticket will ever become available.
  bool NoMoreTickets() const;
  // Hands available tickets to idle connections and new ones.
  void Dispatch();
  void Release(int64_t now);
  void ArmSchedule();
  void Stop();
  void OnTick(int res, uint32_t flags);
  void OnSchedule(int res, uint32_t flags);
  void OnSignal(int res, uint32_t flags);
  void Reap();
  void Progress(int64_t now);
  TlsClientContext* TakeTlsContext();

  Flags flags_;
  MessageFactory factory_;
  IoRing ring_;
  engine::SocketAddress address_;
  std::string sni_;
  SmtpClientOptions session_options_;
  LoadgenTotals totals_;

  // TLS: one context per live connection, reused LIFO, so each connection
  // resumes the session its context's previous connection left (the
  // context's cache holds one session per host, and TLS 1.3 tickets are
  // single use: one shared context would let only one connection at a time
  // resume).
  std::vector<std::unique_ptr<TlsClientContext>> tls_contexts_;
  std::vector<TlsClientContext*> free_tls_contexts_;

  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> idle_;
  std::vector<Connection*> closing_;
  uint64_t active_ = 0;  // connections counted against --connections

  Op tick_op_{this, &Loadgen::OnTick};
  __kernel_timespec tick_ts_{0, kTickNs};
  Op schedule_op_{this, &Loadgen::OnSchedule};
  __kernel_timespec schedule_ts_{};
  bool schedule_armed_ = false;
  Op signal_op_{this, &Loadgen::OnSignal};
  StopSignals stop_signals_;

  int64_t start_ns_ = 0;
  int64_t end_ns_ = -1;            // --duration deadline
  int64_t last_result_ns_ = 0;     // the last message's final reply
  int64_t stop_deadline_ns_ = -1;  // stopping: when to give up on connections
  int64_t next_progress_ns_ = 0;
  int64_t connect_hold_until_ns_ = 0;
  uint64_t claimed_ = 0;   // tickets handed out
  uint64_t released_ = 0;  // open loop: tickets whose time has come
  uint64_t connect_failures_ = 0;
  uint64_t last_progress_acked_ = 0;
  int signals_ = 0;
  bool stopping_ = false;
  bool ever_connected_ = false;
  bool setup_failed_ = false;
  std::string setup_error_;
  bool done_ = false;
};

// --- Connection ---

Connection::Connection(Loadgen* lg, TlsClientContext* tls_context)
    : lg_(lg),
      tls_context_(tls_context),
      timeout_ns_(static_cast<int64_t>(lg->flags().timeout_s * 1e9)),
      stream_(lg->ring(), this) {}

void Connection::Start(Ticket ticket) {
  ticket_ = ticket;
  session_ = std::make_unique<SmtpClientSession>(lg_->session_options());
  connect_start_ns_ = NowNs();
  Refresh();
  if (absl::Status st = stream_.Connect(lg_->address()); !st.ok()) {
    lg_->OnNotSent(st);
    ticket_.reset();
    lg_->CountError("connect");
    stream_.Close();
    return;
  }
  int one = 1;
  setsockopt(stream_.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void Connection::OnConnected(int res) {
  if (res < 0) {
    Abort("connect");
    lg_->OnConnectFailed();  // may stop the run: after this connection's count
    return;
  }
  lg_->OnConnected();
  ++lg_->totals()->connections;
  lg_->totals()->connect.Record(Micros(NowNs() - connect_start_ns_));
  Refresh();
  if (lg_->flags().mode == Mode::kImplicit) StartTls();  // RFC 8314: TLS first
}

void Connection::OnWireBytes(size_t n) {
  if (!stream_.closing() && !ended_) Refresh();
}

void Connection::OnStreamData(std::string_view data) {
  // Under TLS, reading also stores TLS 1.3 session tickets in the context's
  // cache (the stream reads after every flight).
  session_->Receive(data);
  Drive();
}

void Connection::OnStreamEnd(StreamEnd how, std::string_view detail) {
  if (ended_) {
    stream_.Close();  // the server closed after our end: nothing more to read
    return;
  }
  switch (how) {
    case StreamEnd::kEof:
      session_->ConnectionLost("connection closed by the server");
      break;
    case StreamEnd::kTlsClosed:
      session_->ConnectionLost("TLS connection closed");
      break;
    case StreamEnd::kError:
      session_->ConnectionLost(std::string(detail));
      break;
  }
  Drive();
}

void Connection::OnSendFailed(int err) {
  // The stream closes after this.
  if (ended_) return;
  session_->ConnectionLost(std::strerror(-err));
  Drive();
}

void Connection::OnCompletionDone() {
  if (data_end_pending_ && stream_.send_idle()) {
    // The last content octet was handed to the kernel.
    times_.data_end_ns = NowNs();
    data_end_pending_ = false;
  }
  // A completion of a busy connection is progress: a large body to a slow
  // reader (its sends) as much as a reply.
  if (!stream_.closing() && !idle_) Refresh();
}

void Connection::StartTls() {
  tls_start_ns_ = NowNs();
  stream_.StartTlsClient(tls_context_, lg_->sni());  // the ClientHello goes out
}

void Connection::OnTlsFailed(std::string_view reason) {
  if (stream_.closing()) return;
  if (ended_) {
    // The server closed after the session failed: nothing more to read.
    if (reason == engine::kTlsEofReason) stream_.Close();
    return;
  }
  TlsFailed(reason == engine::kTlsEofReason ? "connection closed during the TLS handshake"
                                            : reason);
}

void Connection::TlsFailed(std::string_view reason) {
  if (lg_->flags().mode == Mode::kImplicit) {
    Abort("tls");
    return;
  }
  session_->TlsFailed(reason);
  Drive();
}

void Connection::OnTlsEstablished() {
  LoadgenTotals* t = lg_->totals();
  ++t->tls_handshakes;
  if (stream_.tls()->resumed()) ++t->resumed_sessions;
  t->tls_handshake.Record(Micros(NowNs() - tls_start_ns_));
  // Implicit TLS: the session never saw STARTTLS; the greeting comes next.
  if (lg_->flags().mode == Mode::kStartTls) session_->TlsStarted(stream_.out());
  Drive();
}

void Connection::Drive() {
  while (!stream_.closing() && !ended_) {
    std::string* out = stream_.out();
    const size_t before = out->size();
    const SmtpClientSession::Event e = session_->Process(out);
    if (in_message_ && times_.data_start_ns == 0 && out->size() > before &&
        std::string_view(*out).substr(before).find(marker_) != std::string_view::npos) {
      // The content went out: after the 354, or as BDAT once RCPT was answered.
      times_.data_start_ns = NowNs();
      data_end_pending_ = true;
    }
    switch (e) {
      case SmtpClientSession::Event::kNeedInput:
        stream_.Flush();
        return;
      case SmtpClientSession::Event::kStartTls:
        stream_.Flush();  // the plaintext before the handshake
        if (!stream_.tls_started()) StartTls();
        return;
      case SmtpClientSession::Event::kReady:
        if (ticket_ && !in_message_) {
          BeginMessage();  // on failure, kReady again and the next decision
          continue;
        }
        if (lg_->OnReady(this)) continue;
        idle_ = true;
        deadline_ns_ = 0;
        stream_.Flush();
        return;
      case SmtpClientSession::Event::kMessageDone:
        FinishMessage(session_->TakeResult());
        continue;
      case SmtpClientSession::Event::kClosed:
      case SmtpClientSession::Event::kFailed: {
        std::optional<MessageResult> result = session_->TakeResult();
        if (in_message_) FinishMessage(result);
        if (ticket_) {
          lg_->OnNotSent(absl::UnavailableError("connection ended before the message"));
          ticket_.reset();
        }
        const ConnectionOutcome& o = session_->outcome();
        const bool orderly = o.kind == ConnectionOutcome::Kind::kOk ||
                             (quitting_ && o.kind == ConnectionOutcome::Kind::kConnectionLost);
        if (!orderly) lg_->CountError(ErrorLabel());
        ended_ = true;
        lg_->Deactivate(this);
        stream_.CloseAfterFlush();  // TLS: close_notify first
        return;
      }
    }
  }
}

bool Connection::BeginMessage() {
  lg_->factory()->Make(ticket_->seq, &message_);
  marker_ = message_.body.substr(0, message_.body.find("\r\n"));
  times_ = MessageTimes{};
  times_.intended_ns = ticket_->intended_ns;
  times_.mail_ns = NowNs();
  absl::Status st = session_->StartMessage(message_, stream_.out());
  if (!st.ok()) {
    lg_->OnNotSent(st);
    ticket_.reset();
    return false;
  }
  ++lg_->totals()->sent;
  in_message_ = true;
  data_end_pending_ = false;
  return true;
}

void Connection::FinishMessage(const std::optional<MessageResult>& result) {
  if (data_end_pending_ || (times_.data_start_ns != 0 && times_.data_end_ns == 0)) {
    // The reply came before the send completion was seen.
    times_.data_end_ns = times_.data_start_ns;
  }
  data_end_pending_ = false;
  if (result) {
    lg_->OnMessageDone(*result, message_, times_);
  } else {
    ++lg_->totals()->failed;
  }
  ++messages_done_;
  in_message_ = false;
  ticket_.reset();
}

void Connection::Assign(Ticket ticket) {
  idle_ = false;
  ticket_ = ticket;
  Refresh();
  Drive();
}

void Connection::Quit() {
  if (stream_.closing() || ended_ || quitting_) return;
  if (session_->Quit(stream_.out()).ok()) {
    quitting_ = true;
    idle_ = false;
    lg_->Deactivate(this);
    Refresh();
    stream_.Flush();
    return;
  }
  Abort("quit");
}

void Connection::Tick(int64_t now) {
  if (stream_.closing() || deadline_ns_ == 0 || now < deadline_ns_) return;
  if (!stream_.connected()) {
    Abort("connect_timeout");
  } else if (stream_.tls_handshaking() || ended_) {
    Abort("timeout");
  } else {
    lost_label_ = "timeout";
    session_->ConnectionLost("timeout");
    Drive();
  }
}

void Connection::Abort(const std::string& label) {
  if (stream_.closing()) return;
  if (in_message_) {
    ++lg_->totals()->failed;
    in_message_ = false;
  } else if (ticket_) {
    lg_->OnNotSent(absl::UnavailableError(label));
  }
  ticket_.reset();
  if (!ended_ && !label.empty()) lg_->CountError(label);
  ended_ = true;
  Close();
}

std::string Connection::ErrorLabel() const {
  switch (session_->outcome().kind) {
    case ConnectionOutcome::Kind::kOk:
      return "none";
    case ConnectionOutcome::Kind::kRejected:
      return "rejected";
    case ConnectionOutcome::Kind::kTlsUnavailable:
      return "tls_unavailable";
    case ConnectionOutcome::Kind::kTlsFailed:
      return "tls";
    case ConnectionOutcome::Kind::kServiceClosing:
      return "service_closing";
    case ConnectionOutcome::Kind::kProtocolError:
      return "protocol";
    case ConnectionOutcome::Kind::kConnectionLost:
      return lost_label_;
  }
  return "other";
}

void Connection::OnStreamClosing() {
  idle_ = false;
  lg_->Deactivate(this);
  lg_->OnClosing(this);
}

// --- Loadgen ---

absl::Status Loadgen::Init() {
  std::string host;
  absl::StatusOr<engine::SocketAddress> addr = ResolveTarget(flags_.target, &host);
  if (!addr.ok()) return addr.status();
  address_ = *addr;
  if (flags_.sni) {
    sni_ = *flags_.sni;
  } else {
    // The context caches sessions by name only; an IP target still needs one
    // for resumption.
    sni_ = TlsClientContext::IsIpLiteral(host) ? "localhost" : host;
  }

  session_options_.helo_name = flags_.helo;
  session_options_.tls = flags_.mode == Mode::kStartTls ? SmtpClientOptions::Tls::kRequired
                                                        : SmtpClientOptions::Tls::kNever;
  session_options_.use_pipelining = flags_.pipelining;
  session_options_.use_chunking = flags_.chunking;

  // Message-IDs differ between runs: the start time and pid.
  MessageOptions mo = flags_.message;
  mo.domain = flags_.helo;
  mo.run_id = absl::StrCat(absl::Hex(static_cast<uint64_t>(time(nullptr))), ".", getpid());
  factory_ = MessageFactory(mo, flags_.seed);

  absl::Status st = ring_.Init(kRingEntries, kRecvBuffers, kRecvBufferSize);
  if (!st.ok()) return st;
  if (flags_.mode != Mode::kPlain) {
    // Fails early on a TLS setup problem, and warms the pool.
    TlsClientContext* ctx = TakeTlsContext();
    if (ctx == nullptr) return absl::InternalError("cannot create the TLS client context");
    free_tls_contexts_.push_back(ctx);
  }

  RaiseOpenFileLimit();
  return stop_signals_.Init();
}

TlsClientContext* Loadgen::TakeTlsContext() {
  if (!free_tls_contexts_.empty()) {
    TlsClientContext* ctx = free_tls_contexts_.back();
    free_tls_contexts_.pop_back();
    return ctx;
  }
  engine::TlsClientOptions options;
  options.min_version =
      flags_.tls_version == "1.3" ? engine::TlsVersion::kTls13 : engine::TlsVersion::kTls12;
  options.session_cache_size = flags_.resume ? 1 : 0;
  absl::StatusOr<std::unique_ptr<TlsClientContext>> ctx = TlsClientContext::Create(options);
  if (!ctx.ok()) {
    std::fprintf(stderr, "postern-loadgen: %s\n", ctx.status().ToString().c_str());
    return nullptr;
  }
  // The context always allows TLS 1.3; --tls-version 1.2 caps it here.
  if (flags_.tls_version == "1.2" &&
      !SSL_CTX_set_max_proto_version((*ctx)->get(), TLS1_2_VERSION)) {
    return nullptr;
  }
  tls_contexts_.push_back(std::move(*ctx));
  return tls_contexts_.back().get();
}

bool Loadgen::HasTicket() const {
  if (stopping_) return false;
  if (flags_.messages > 0 && claimed_ >= flags_.messages) return false;
  return !open_loop() || claimed_ < released_;
}

bool Loadgen::NoMoreTickets() const {
  return stopping_ || (flags_.messages > 0 && claimed_ >= flags_.messages);
}

Ticket Loadgen::ClaimTicket() {
  Ticket t;
  t.seq = claimed_++;
  t.intended_ns = open_loop() ? start_ns_ + static_cast<int64_t>(t.seq) * Period() : NowNs();
  return t;
}

bool Loadgen::OnReady(Connection* c) {
  const uint64_t limit = flags_.messages_per_connection;
  if (limit > 0 && c->messages_done() >= limit) {
    c->Quit();
    return true;
  }
  if (HasTicket()) {
    // A ticket for the connection that asks: its Drive() goes on with it.
    c->SetTicket(ClaimTicket());
    return true;
  }
  if (NoMoreTickets()) {
    c->Quit();
    return true;
  }
  idle_.push_back(c);
  return false;
}

void Loadgen::Deactivate(Connection* c) {
  auto it = std::find(idle_.begin(), idle_.end(), c);
  if (it != idle_.end()) idle_.erase(it);
  if (c->Uncount()) --active_;
}

void Loadgen::OnConnectFailed() {
  ++connect_failures_;
  connect_hold_until_ns_ = NowNs() + kConnectBackoffNs;
  if (!ever_connected_ && connect_failures_ >= std::min<uint64_t>(flags_.connections, 3)) {
    // Nothing to measure: the target does not take connections at all.
    setup_failed_ = true;
    setup_error_ = absl::StrCat("cannot connect to ", flags_.target);
    Stop();
  }
}

void Loadgen::OnClosing(Connection* c) { closing_.push_back(c); }

void Loadgen::OnNotSent(const absl::Status& why) {
  ++totals_.not_sent;
  if (why.code() == absl::StatusCode::kInvalidArgument && !setup_failed_) {
    // The session refuses the generated message itself: a flag is wrong.
    setup_failed_ = true;
    setup_error_ = absl::StrCat("message refused: ", why.message());
    Stop();
  }
}

void Loadgen::OnMessageDone(const MessageResult& result, const engine::OutboundMessage& message,
                            const MessageTimes& times) {
  const int64_t now = NowNs();
  last_result_ns_ = now;
  if (times.data_start_ns != 0) {
    totals_.mail_to_data.Record(Micros(times.data_start_ns - times.mail_ns));
    if (result.data_reply) totals_.data_end_to_250.Record(Micros(now - times.data_end_ns));
  }
  if (result.data_reply && result.data_reply->positive()) {
    ++totals_.acknowledged;
    totals_.bytes_acknowledged += message.body.size();
    for (const engine::RecipientResult& r : result.recipients) {
      if (r.outcome == engine::RecipientResult::Outcome::kDelivered) {
        ++totals_.recipients_accepted;
      } else {
        ++totals_.recipients_rejected[r.code];
      }
    }
    totals_.message.Record(Micros(now - times.intended_ns));
    return;
  }
  int code = result.data_reply ? result.data_reply->code : 0;
  for (const engine::RecipientResult& r : result.recipients) {
    if (code == 0 && r.code != 0) code = r.code;
  }
  if (code != 0) {
    ++totals_.rejected[code];
  } else {
    ++totals_.failed;
  }
}

void Loadgen::Dispatch() {
  while (HasTicket()) {
    if (!idle_.empty()) {
      Connection* c = idle_.back();
      idle_.pop_back();
      c->Assign(ClaimTicket());
      continue;
    }
    if (active_ >= flags_.connections || NowNs() < connect_hold_until_ns_) break;
    TlsClientContext* ctx = nullptr;
    if (flags_.mode != Mode::kPlain) {
      ctx = TakeTlsContext();
      if (ctx == nullptr) {
        setup_failed_ = true;
        setup_error_ = "cannot create a TLS client context";
        Stop();
        return;
      }
    }
    auto conn = std::make_unique<Connection>(this, ctx);
    Connection* raw = conn.get();
    connections_.emplace(raw, std::move(conn));
    ++active_;
    raw->Start(ClaimTicket());
  }
  if (NoMoreTickets()) {
    // Idle connections will get nothing more.
    std::vector<Connection*> idle;
    idle.swap(idle_);
    for (Connection* c : idle) c->Quit();
  }
}

void Loadgen::Release(int64_t now) {
  if (!open_loop() || stopping_) return;
  uint64_t due = static_cast<uint64_t>((now - start_ns_) / Period()) + 1;
  if (flags_.messages > 0) due = std::min(due, flags_.messages);
  released_ = std::max(released_, due);
}

void Loadgen::ArmSchedule() {
  if (!open_loop() || stopping_ || schedule_armed_) return;
  if (flags_.messages > 0 && released_ >= flags_.messages) return;
  const int64_t next = start_ns_ + static_cast<int64_t>(released_) * Period();
  SetTimespec(next - NowNs(), &schedule_ts_);
  ring_.Timeout(&schedule_ts_, &schedule_op_);
  schedule_armed_ = true;
}

void Loadgen::OnSchedule(int res, uint32_t flags) {
  schedule_armed_ = false;
  Release(NowNs());
  ArmSchedule();
}

void Loadgen::Stop() {
  if (stopping_) return;
  stopping_ = true;
  stop_deadline_ns_ = NowNs() + static_cast<int64_t>(flags_.timeout_s * 1e9);
  if (setup_failed_) {
    // Nothing to measure; not more errors of the target either.
    for (auto& [raw, conn] : connections_) conn->Abort("");
    return;
  }
  // Dispatch() after this event: idle connections say QUIT, busy ones
  // finish their message first.
}

void Loadgen::OnSignal(int res, uint32_t flags) {
  if (++signals_ == 1) {
    Stop();
  } else {
    for (auto& [raw, conn] : connections_) conn->Abort("stopped");
  }
  if (!done_) stop_signals_.Arm(&ring_, &signal_op_);
}

void Loadgen::OnTick(int res, uint32_t flags) {
  const int64_t now = NowNs();
  if (!stopping_ && end_ns_ >= 0 && now >= end_ns_) Stop();
  if (stopping_ && now >= stop_deadline_ns_) {
    for (auto& [raw, conn] : connections_) conn->Abort("stopped");
  }
  for (auto& [raw, conn] : connections_) conn->Tick(now);
  if (now >= next_progress_ns_) {
    next_progress_ns_ += kProgressNs;
    Progress(now);
  }
  ring_.Timeout(&tick_ts_, &tick_op_);
}

void Loadgen::Progress(int64_t now) {
  if (flags_.quiet) return;
  const uint64_t acked = totals_.acknowledged;
  std::fprintf(stderr,
               "[%6.1fs] %7llu msg/s  acked %llu  sent %llu  rejected %llu  failed %llu  "
               "connection errors %llu  open %zu  p99 %.3f ms\n",
               static_cast<double>(now - start_ns_) / 1e9,
               static_cast<unsigned long long>(acked - last_progress_acked_),
               static_cast<unsigned long long>(acked),
               static_cast<unsigned long long>(totals_.sent),
               static_cast<unsigned long long>(totals_.rejected_total()),
               static_cast<unsigned long long>(totals_.failed + totals_.not_sent),
               static_cast<unsigned long long>(totals_.connection_errors_total()),
               connections_.size(), static_cast<double>(totals_.message.Percentile(99)) / 1000.0);
  last_progress_acked_ = acked;
}

void Loadgen::Reap() {
  size_t kept = 0;
  for (Connection* c : closing_) {
    if (c->Finished()) {
      if (c->tls_context() != nullptr) free_tls_contexts_.push_back(c->tls_context());
      connections_.erase(c);
    } else {
      closing_[kept++] = c;
    }
  }
  closing_.resize(kept);
}

absl::Status Loadgen::Run() {
  start_ns_ = NowNs();
  next_progress_ns_ = start_ns_ + kProgressNs;
  if (flags_.duration_s > 0) end_ns_ = start_ns_ + static_cast<int64_t>(flags_.duration_s * 1e9);
  stop_signals_.Arm(&ring_, &signal_op_);
  ring_.Timeout(&tick_ts_, &tick_op_);
  Release(start_ns_);
  ArmSchedule();
  Dispatch();
  while (!done_) {
    absl::Status st = ring_.RunOnce();
    if (!st.ok()) return st;
    Reap();
    // New connections, idle ones' next messages and QUITs are decided here,
    // once per batch of completions and never inside a connection's handler.
    Dispatch();
    if (NoMoreTickets() && connections_.empty()) done_ = true;
  }
  const int64_t end = last_result_ns_ > 0 ? last_result_ns_ : NowNs();
  totals_.elapsed_s = static_cast<double>(end - start_ns_) / 1e9;
  if (open_loop() && released_ > claimed_) totals_.overdue = released_ - claimed_;
  return absl::OkStatus();
}

int Loadgen::Report() {
  const std::string table = totals_.Table();
  if (flags_.json) {
    std::fputs(totals_.Json().c_str(), stdout);
    std::fputs(table.c_str(), stderr);
  } else {
    std::fputs(table.c_str(), stdout);
  }
  std::fflush(stdout);
  if (setup_failed_) {
    std::fprintf(stderr, "postern-loadgen: %s\n", setup_error_.c_str());
    return 1;
  }
  if (totals_.acknowledged == 0) {
    std::fprintf(stderr, "postern-loadgen: no message was acknowledged\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace postern::bench

int main(int argc, char** argv) {
  using postern::bench::Loadgen;
  return postern::bench::RunTool<Loadgen>("postern-loadgen", postern::bench::kUsage,
                                          postern::bench::ParseFlags(argc, argv));
}
