// postern-sink: a fast SMTP receiver that counts, hashes and discards mail.
// The far end of end-to-end benchmarks, and the configurable receiving peer
// of integration tests of outbound delivery (it can hide extensions, refuse
// with chosen replies, cap TLS at 1.2, answer slowly). See bench/README.md.
//
// One thread, one io_uring (engine::IoRing): every connection is an
// engine::Stream (the socket, its sends and receives, TLS on BoringSSL in
// memory) plus the glue to its SinkSession and the --delay-ms timer. The
// loop makes no blocking calls except two bounded file writes: the --jsonl
// lines, buffered in memory and written once a second and at exit (a stdio
// buffer of 1 MiB; it is also written when full), and the --stats file once
// a second.
//
// Links liburing and BoringSSL, never gRPC or OpenSSL 3 (tests/test_sink.py
// checks the binary, as tests/test_link_separation.py does for the worker).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "bench/flag_parser.h"
#include "bench/sink_session.h"
#include "bench/stop_signals.h"
#include "bench/tool_main.h"
#include "engine/net/io_ring.h"
#include "engine/net/method_op.h"
#include "engine/net/socket_address.h"
#include "engine/net/stream.h"
#include "engine/tls/tls_server_context.h"
#include "engine/tls/tls_session.h"

namespace postern::bench {
namespace {

using engine::IoOp;
using engine::IoRing;
using engine::Stream;
using engine::StreamEnd;
using engine::TlsServerContext;
using engine::TlsSession;

constexpr char kUsage[] =
    "usage: postern-sink [flags]\n"
    "  --listen ADDR:PORT      listen here (repeatable; default 127.0.0.1:2526)\n"
    "  --tls none|offer|implicit  offer = advertise STARTTLS; implicit = TLS first\n"
    "  --cert FILE --key FILE  PEM certificate (chain) and key, for offer/implicit\n"
    "  --tls-min 1.2|1.3 --tls-max 1.2|1.3  protocol versions accepted\n"
    "  --hostname NAME         name in the greeting and EHLO reply\n"
    "  --greeting \"CODE TEXT\"  the greeting line\n"
    "  --no-ehlo               answer EHLO 502 (the client falls back to HELO)\n"
    "  --no-pipelining --no-chunking --no-8bitmime --no-smtputf8 --no-dsn\n"
    "                          do not offer that extension\n"
    "  --reply-mail|--reply-rcpt|--reply-data \"CODE TEXT\"  answer MAIL, RCPT or\n"
    "                          the end of DATA/BDAT LAST with this line\n"
    "  --reject-rcpt SUBSTR    --reply-rcpt only for recipients containing SUBSTR\n"
    "  --delay-ms N            wait N ms before the end-of-data reply\n"
    "  --jsonl FILE            one JSON line per accepted message\n"
    "  --keep-content          add each message's content to its JSON line (tests)\n"
    "  --stats FILE            counters as JSON, rewritten every second and at exit\n"
    "  --max-messages N        exit after N accepted messages\n"
    "  --duration S            exit after S seconds\n";

constexpr unsigned kRingEntries = 4096;
constexpr unsigned kRecvBuffers = 2048;
constexpr unsigned kRecvBufferSize = 16 * 1024;
constexpr int kListenBacklog = 4096;
constexpr int64_t kTickMs = 100;
constexpr int64_t kStatsIntervalMs = 1000;
// After --max-messages: how long open sessions may go on (new MAIL is
// refused) so clients can read their last reply and QUIT.
constexpr int64_t kDrainGraceMs = 2000;
// After the 421 of a shutdown: how long replies may take to go out.
constexpr int64_t kFlushGraceMs = 1000;

enum class TlsMode { kNone, kOffer, kImplicit };

struct Flags {
  std::vector<std::string> listen;
  TlsMode tls = TlsMode::kNone;
  std::string cert;
  std::string key;
  std::string tls_min;  // "" or "1.2"/"1.3"
  std::string tls_max;
  SinkOptions session;
  int64_t delay_ms = 0;
  std::string jsonl;
  std::string stats;
  uint64_t max_messages = 0;
  double duration_s = 0;
};

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  FlagParser parser(argc, argv);
  while (parser.Next()) {
    const std::string& name = parser.name();
    // Switches.
    bool* toggle = nullptr;
    if (name == "no-ehlo") toggle = &flags.session.ehlo;
    if (name == "no-pipelining") toggle = &flags.session.pipelining;
    if (name == "no-chunking") toggle = &flags.session.chunking;
    if (name == "no-8bitmime") toggle = &flags.session.eight_bit_mime;
    if (name == "no-smtputf8") toggle = &flags.session.smtputf8;
    if (name == "no-dsn") toggle = &flags.session.dsn;
    if (toggle != nullptr || name == "keep-content") {
      if (absl::Status st = parser.NoValue(); !st.ok()) return st;
      if (toggle != nullptr) *toggle = false;
      if (name == "keep-content") flags.session.keep_content = true;
      continue;
    }
    if (absl::Status st = parser.TakeValue(); !st.ok()) return st;
    const std::string& value = parser.value();
    auto reply = [&](std::string* field) -> absl::Status {
      absl::Status st = ValidateReplyLine(value);
      if (!st.ok())
        return absl::InvalidArgumentError("--" + name + ": " + std::string(st.message()));
      *field = value;
      return absl::OkStatus();
    };
    absl::Status st;
    if (name == "listen") {
      flags.listen.push_back(value);
    } else if (name == "tls") {
      absl::StatusOr<TlsMode> mode = parser.Choice<TlsMode>(
          {{"none", TlsMode::kNone}, {"offer", TlsMode::kOffer}, {"implicit", TlsMode::kImplicit}});
      if (!mode.ok()) return mode.status();
      flags.tls = *mode;
    } else if (name == "cert") {
      flags.cert = value;
    } else if (name == "key") {
      flags.key = value;
    } else if (name == "tls-min" || name == "tls-max") {
      st = parser.CheckChoice({"1.2", "1.3"});
      (name == "tls-min" ? flags.tls_min : flags.tls_max) = value;
    } else if (name == "hostname") {
      flags.session.hostname = value;
    } else if (name == "greeting") {
      st = reply(&flags.session.greeting);
    } else if (name == "reply-mail") {
      st = reply(&flags.session.reply_mail);
    } else if (name == "reply-rcpt") {
      st = reply(&flags.session.reply_rcpt);
    } else if (name == "reply-data") {
      st = reply(&flags.session.reply_data);
    } else if (name == "reject-rcpt") {
      flags.session.reject_rcpt = value;
    } else if (name == "delay-ms") {
      if (!absl::SimpleAtoi(value, &flags.delay_ms) || flags.delay_ms < 0) {
        return absl::InvalidArgumentError("--delay-ms needs a number >= 0");
      }
    } else if (name == "jsonl") {
      flags.jsonl = value;
    } else if (name == "stats") {
      flags.stats = value;
    } else if (name == "max-messages") {
      if (!absl::SimpleAtoi(value, &flags.max_messages)) {
        return absl::InvalidArgumentError("--max-messages needs a number");
      }
    } else if (name == "duration") {
      if (!absl::SimpleAtod(value, &flags.duration_s) || flags.duration_s <= 0) {
        return absl::InvalidArgumentError("--duration needs a number of seconds > 0");
      }
    } else {
      return parser.Unknown();
    }
    if (!st.ok()) return st;
  }
  if (!parser.status().ok()) return parser.status();
  if (flags.listen.empty()) flags.listen.push_back("127.0.0.1:2526");
  if (flags.tls != TlsMode::kNone && (flags.cert.empty() || flags.key.empty())) {
    return absl::InvalidArgumentError("--tls offer/implicit needs --cert and --key");
  }
  if (flags.tls_min == "1.3" && flags.tls_max == "1.2") {
    return absl::InvalidArgumentError("--tls-min is above --tls-max");
  }
  flags.session.starttls = flags.tls == TlsMode::kOffer;
  return flags;
}

class Sink;

// One accepted socket: a Stream and the glue to its SinkSession. Owned by
// the Sink; closing starts with the stream and the sink deletes the object
// once the stream is Finished() (the --delay-ms timer counted in), so no
// completion reaches freed memory. Loop thread only.
class Connection : private engine::StreamHandler {
 public:
  Connection(Sink* sink, int fd);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // Stopping: 421 and close (a delayed end-of-data reply goes out first).
  void Shutdown();
  // Stopping after --max-messages: no new transactions.
  void SetDraining() { session_.SetDraining(); }
  // Gives up on the peer: close now.
  void Close() { stream_.Close(); }
  bool Finished() const { return stream_.Finished(); }

 private:
  using Op = engine::MethodOp<Connection>;

  // StreamHandler
  void OnStreamData(std::string_view data) override;
  void OnStreamEnd(StreamEnd how, std::string_view detail) override;
  void OnTlsEstablished() override;
  void OnTlsFailed(std::string_view reason) override;
  void OnWireBytes(size_t n) override;
  void OnStreamClosing() override;

  void OnTimer(int res, uint32_t flags);
  void Drive();

  Sink* sink_;
  IoRing* ring_;
  SinkSession session_;
  Stream stream_;
  Op timer_op_{this, &Connection::OnTimer};
  __kernel_timespec delay_ts_{};
  bool timer_armed_ = false;
  bool delaying_ = false;  // the end-of-data reply waits for the timer
};

// The listeners, the connections, the counters and the output files.
class Sink {
 public:
  explicit Sink(Flags flags) : flags_(std::move(flags)) {}
  absl::Status Init();
  // Serves until stopped; then writes the final stats.
  absl::Status Run();
  // The results are the --stats and --jsonl files: nothing to print.
  int Report() { return 0; }

  IoRing* ring() { return &ring_; }
  const SinkOptions* options() const { return &flags_.session; }
  TlsServerContext* tls() const { return tls_.get(); }
  bool implicit_tls() const { return flags_.tls == TlsMode::kImplicit; }
  int64_t delay_ms() const { return flags_.delay_ms; }

  void Record(const SinkMessage& message, bool accepted);
  void CountHandshake(bool ok) { ++(ok ? tls_handshakes_ : tls_failures_); }
  void CountReceived(uint64_t bytes) { bytes_received_ += bytes; }
  void ConnectionClosing(Connection* conn) { closing_.push_back(conn); }

 private:
  using Op = engine::MethodOp<Sink>;
  struct Listener;
  class AcceptOp : public IoOp {
   public:
    AcceptOp(Sink* s, Listener* l) : s_(s), l_(l) {}
    void OnComplete(int res, uint32_t flags) override { s_->OnAccept(l_, res, flags); }

   private:
    Sink* s_;
    Listener* l_;
  };
  struct Listener {
    int fd = -1;
    bool armed = false;  // a multishot accept is in flight
    std::unique_ptr<AcceptOp> op;
  };
  enum class Stop { kRunning, kDraining, kShutdown, kForced };

  void OnAccept(Listener* l, int res, uint32_t flags);
  void OnTick(int res, uint32_t flags);
  void OnSignal(int res, uint32_t flags);
  void CloseListeners();
  void BeginDrain();
  void BeginShutdown();
  void Reap();
  void WriteStats();
  void FlushJsonl();

  Flags flags_;
  IoRing ring_;
  std::unique_ptr<TlsServerContext> tls_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> closing_;
  Op tick_op_{this, &Sink::OnTick};
  __kernel_timespec tick_ts_{0, kTickMs * 1000000};
  Op signal_op_{this, &Sink::OnSignal};
  StopSignals stop_signals_;
  FILE* jsonl_ = nullptr;

  Stop stop_ = Stop::kRunning;
  int64_t started_ms_ = 0;
  int64_t end_ms_ = -1;           // --duration deadline
  int64_t stop_deadline_ms_ = 0;  // end of the current stop phase
  int64_t last_stats_ms_ = 0;
  bool done_ = false;

  uint64_t connections_total_ = 0;
  uint64_t messages_ = 0;
  uint64_t rejected_messages_ = 0;
  uint64_t recipients_ = 0;
  uint64_t bytes_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t tls_handshakes_ = 0;
  uint64_t tls_failures_ = 0;
};

// --- Connection ---

Connection::Connection(Sink* sink, int fd)
    : sink_(sink), ring_(sink->ring()), session_(sink->options()), stream_(ring_, this, fd) {}

void Connection::Start() {
  stream_.StartReading();
  if (sink_->implicit_tls()) {
    stream_.StartTlsServer(sink_->tls());  // RFC 8314: the greeting follows inside TLS
    return;
  }
  session_.Start(stream_.out());
  Drive();
}

void Connection::OnWireBytes(size_t n) { sink_->CountReceived(n); }

void Connection::OnStreamData(std::string_view data) {
  session_.Receive(data);
  Drive();
}

void Connection::OnStreamEnd(StreamEnd how, std::string_view detail) {
  // Nothing more will come: the replies to what did (a delayed one
  // included) go out, then the connection closes (Drive()).
  Drive();
}

void Connection::OnTlsEstablished() {
  sink_->CountHandshake(true);
  TlsSession* tls = stream_.tls();
  session_.TlsStarted(SinkTlsInfo{tls->version(), tls->cipher(), tls->server_name()});
  if (sink_->implicit_tls()) session_.Start(stream_.out());
  Drive();
}

void Connection::OnTlsFailed(std::string_view reason) {
  // The stream sends the alert (if any) and closes.
  sink_->CountHandshake(false);
}

void Connection::Drive() {
  bool close = false;
  while (!stream_.closing() && !delaying_) {
    SinkSession::Event ev = session_.Process(stream_.out());
    if (ev == SinkSession::Event::kMessage) {
      sink_->Record(session_.message(), session_.message_accepted());
      if (sink_->delay_ms() > 0) {
        // A slow receiver: the reply waits on a ring timeout, the loop does not.
        delay_ts_.tv_sec = sink_->delay_ms() / 1000;
        delay_ts_.tv_nsec = (sink_->delay_ms() % 1000) * 1000000;
        ring_->Timeout(&delay_ts_, &timer_op_);
        stream_.Enter();  // Finished() waits for the timer
        timer_armed_ = true;
        delaying_ = true;
        break;
      }
      session_.FinishMessage(stream_.out());
      continue;
    }
    if (ev == SinkSession::Event::kStartTls && !stream_.tls_started()) {
      // The 220 goes out in plaintext; everything after it is TLS.
      stream_.Flush();
      stream_.StartTlsServer(sink_->tls());
    } else if (ev == SinkSession::Event::kClose) {
      close = true;
    }
    break;
  }
  if (stream_.closing()) return;
  // After the peer's end of input, once no reply is owed (a delayed one),
  // the replies go out and the connection closes.
  if (close || (stream_.input_ended() && !delaying_)) {
    stream_.CloseAfterFlush();
  } else {
    stream_.Flush();
  }
}

void Connection::OnTimer(int res, uint32_t flags) {
  timer_armed_ = false;
  if (!stream_.closing() && delaying_) {
    delaying_ = false;
    session_.FinishMessage(stream_.out());
    Drive();
  }
  stream_.Leave();  // last: the stream may finish here
}

void Connection::Shutdown() {
  if (stream_.closing()) return;
  if (stream_.tls_handshaking()) {
    stream_.Close();
    return;
  }
  if (delaying_) {
    // The client is owed the reply to a recorded message before the 421.
    delaying_ = false;
    ring_->Cancel(&timer_op_);
    session_.FinishMessage(stream_.out());
  }
  session_.Shutdown(stream_.out());
  stream_.CloseAfterFlush();
}

void Connection::OnStreamClosing() {
  if (timer_armed_) ring_->Cancel(&timer_op_);
  sink_->ConnectionClosing(this);
}

// --- Sink ---

std::string ListenAddress(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string ip = engine::AddressIp(addr);
  const std::string port = std::to_string(engine::AddressPort(addr));
  return addr.ss_family == AF_INET6 && ip.find(':') != std::string::npos
             ? absl::StrCat("[", ip, "]:", port)
             : absl::StrCat(ip, ":", port);
}

absl::Status Sink::Init() {
  started_ms_ = NowMs();
  last_stats_ms_ = started_ms_;
  if (flags_.duration_s > 0) end_ms_ = started_ms_ + static_cast<int64_t>(flags_.duration_s * 1000);
  absl::Status st = ring_.Init(kRingEntries, kRecvBuffers, kRecvBufferSize);
  if (!st.ok()) return st;

  if (flags_.tls != TlsMode::kNone) {
    engine::TlsServerOptions options;
    options.certificates.push_back(engine::CertKeyPair{flags_.cert, flags_.key});
    options.min_version =
        flags_.tls_min == "1.3" ? engine::TlsVersion::kTls13 : engine::TlsVersion::kTls12;
    // A test peer takes whatever a sender offers.
    options.ciphers = engine::CipherClass::kCompat;
    auto ctx = TlsServerContext::Create(options);
    if (!ctx.ok()) return ctx.status();
    tls_ = std::move(*ctx);
    // TlsServerContext always allows TLS 1.3; a 1.2-only receiver is capped
    // here on its SSL_CTX, which the context lends out for such settings.
    if (flags_.tls_max == "1.2" && !SSL_CTX_set_max_proto_version(tls_->get(), TLS1_2_VERSION)) {
      return absl::InternalError("SSL_CTX_set_max_proto_version");
    }
  }

  if (!flags_.jsonl.empty()) {
    jsonl_ = std::fopen(flags_.jsonl.c_str(), "w");
    if (jsonl_ == nullptr) return absl::ErrnoToStatus(errno, "open " + flags_.jsonl);
    std::setvbuf(jsonl_, nullptr, _IOFBF, 1 << 20);
  }

  RaiseOpenFileLimit();

  std::vector<std::string> bound;
  for (const std::string& text : flags_.listen) {
    auto addr = engine::ParseSocketAddress(text);
    if (!addr.ok()) return addr.status();
    auto fd = engine::OpenListenSocket(*addr, kListenBacklog);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(),
                          "listen on " + text + ": " + std::string(fd.status().message()));
    }
    auto l = std::make_unique<Listener>();
    l->fd = *fd;
    l->op = std::make_unique<AcceptOp>(this, l.get());
    ring_.Accept(l->fd, l->op.get());
    l->armed = true;
    bound.push_back(ListenAddress(l->fd));
    listeners_.push_back(std::move(l));
  }

  st = stop_signals_.Init();
  if (!st.ok()) return st;
  stop_signals_.Arm(&ring_, &signal_op_);
  ring_.Timeout(&tick_ts_, &tick_op_);

  WriteStats();
  std::printf("postern-sink listening on %s\n", absl::StrJoin(bound, ", ").c_str());
  std::fflush(stdout);
  return absl::OkStatus();
}

absl::Status Sink::Run() {
  while (!done_) {
    absl::Status st = ring_.RunOnce();
    if (!st.ok()) return st;
    Reap();
    if (stop_ != Stop::kRunning && connections_.empty()) done_ = true;
  }
  FlushJsonl();
  if (jsonl_ != nullptr) std::fclose(jsonl_);
  jsonl_ = nullptr;
  WriteStats();
  return absl::OkStatus();
}

void Sink::OnAccept(Listener* l, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) l->armed = false;
  if (res >= 0) {
    if (stop_ != Stop::kRunning) {
      ring_.Close(res);  // accepted before the listener closed
    } else {
      ++connections_total_;
      int one = 1;
      setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto conn = std::make_unique<Connection>(this, res);
      Connection* raw = conn.get();
      connections_.emplace(raw, std::move(conn));
      raw->Start();
    }
  } else if (res != -ECANCELED && res != -EINVAL && res != -EBADF) {
    std::fprintf(stderr, "postern-sink: accept: %s\n", std::strerror(-res));
  }
  if (!l->armed && stop_ == Stop::kRunning && l->fd >= 0) {
    ring_.Accept(l->fd, l->op.get());
    l->armed = true;
  }
}

void Sink::Record(const SinkMessage& message, bool accepted) {
  if (!accepted) {
    ++rejected_messages_;
    return;
  }
  ++messages_;
  recipients_ += message.rcpt.size();
  bytes_ += message.size;
  if (jsonl_ != nullptr) {
    std::string line = SinkMessageJson(message);
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), jsonl_);
  }
  if (flags_.max_messages > 0 && messages_ >= flags_.max_messages && stop_ == Stop::kRunning) {
    BeginDrain();
  }
}

void Sink::CloseListeners() {
  for (auto& l : listeners_) {
    if (l->fd < 0) continue;
    if (l->armed) ring_.Cancel(l->op.get());
    ring_.Close(l->fd);
    l->fd = -1;
  }
}

void Sink::BeginDrain() {
  stop_ = Stop::kDraining;
  stop_deadline_ms_ = NowMs() + kDrainGraceMs;
  CloseListeners();
  for (auto& [raw, conn] : connections_) conn->SetDraining();
}

void Sink::BeginShutdown() {
  stop_ = Stop::kShutdown;
  stop_deadline_ms_ = NowMs() + kFlushGraceMs;
  CloseListeners();
  for (auto& [raw, conn] : connections_) conn->Shutdown();
}

void Sink::OnSignal(int res, uint32_t flags) {
  if (stop_ == Stop::kRunning || stop_ == Stop::kDraining) BeginShutdown();
  if (!done_) stop_signals_.Arm(&ring_, &signal_op_);
}

void Sink::OnTick(int res, uint32_t flags) {
  const int64_t now = NowMs();
  if (now - last_stats_ms_ >= kStatsIntervalMs) {
    last_stats_ms_ = now;
    FlushJsonl();
    WriteStats();
  }
  if (stop_ == Stop::kRunning && end_ms_ >= 0 && now >= end_ms_) BeginShutdown();
  if (stop_ == Stop::kDraining && now >= stop_deadline_ms_) {
    BeginShutdown();
  } else if (stop_ == Stop::kShutdown && now >= stop_deadline_ms_) {
    // Peers that never read their 421: stop waiting for them.
    stop_ = Stop::kForced;
    for (auto& [raw, conn] : connections_) conn->Close();
  }
  ring_.Timeout(&tick_ts_, &tick_op_);
}

void Sink::Reap() {
  size_t kept = 0;
  for (Connection* conn : closing_) {
    if (conn->Finished()) {
      connections_.erase(conn);
    } else {
      closing_[kept++] = conn;
    }
  }
  closing_.resize(kept);
}

void Sink::FlushJsonl() {
  if (jsonl_ != nullptr) std::fflush(jsonl_);
}

void Sink::WriteStats() {
  if (flags_.stats.empty()) return;
  const double uptime = static_cast<double>(NowMs() - started_ms_) / 1000.0;
  const std::string json = absl::StrCat(
      "{\"connections\":", connections_total_, ",\"active_connections\":", connections_.size(),
      ",\"messages\":", messages_, ",\"rejected_messages\":", rejected_messages_,
      ",\"recipients\":", recipients_, ",\"bytes\":", bytes_,
      ",\"bytes_received\":", bytes_received_, ",\"tls_handshakes\":", tls_handshakes_,
      ",\"tls_failures\":", tls_failures_, ",\"uptime_s\":", uptime, "}\n");
  // Readers see the old file or the new one, never half of one.
  const std::string tmp = flags_.stats + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const bool ok = write(fd, json.data(), json.size()) == static_cast<ssize_t>(json.size());
  close(fd);
  if (ok) rename(tmp.c_str(), flags_.stats.c_str());
}

}  // namespace
}  // namespace postern::bench

int main(int argc, char** argv) {
  using postern::bench::Sink;
  return postern::bench::RunTool<Sink>("postern-sink", postern::bench::kUsage,
                                       postern::bench::ParseFlags(argc, argv));
}
