#include "engine/net/ring_test_support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "gtest/gtest.h"

namespace postern::engine::ring_test {

RingPump::RingPump() {
  const absl::Status st = ring_.Init(256, 64, 16 * 1024);
  EXPECT_TRUE(st.ok()) << st;
}

RingPump::~RingPump() {
  while (timer_.armed) {
    if (!ring_.RunOnce().ok()) break;
  }
}

void RingPump::ArmTimer() {
  if (timer_.armed) return;
  timer_.armed = true;
  ring_.Timeout(&timer_.ts, &timer_);
}

bool RingPump::RunUntil(const std::function<bool()>& done, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ArmTimer();
    if (!ring_.RunOnce().ok()) return false;
  }
  return true;
}

void RingPump::RunFor(int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  RunUntil([&] { return std::chrono::steady_clock::now() >= until; }, ms + 1000);
}

SocketPair MakeSocketPair() {
  SocketPair p;
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.fds), 0);
  fcntl(p.fds[1], F_SETFL, fcntl(p.fds[1], F_GETFL) | O_NONBLOCK);
  return p;
}

LoopbackListener ListenOnLoopback() {
  LoopbackListener l;
  l.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(l.fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(listen(l.fd, 16), 0);
  socklen_t len = sizeof a;
  getsockname(l.fd, reinterpret_cast<sockaddr*>(&a), &len);
  l.port = ntohs(a.sin_port);
  return l;
}

Peer::~Peer() { Close(); }

void Peer::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Peer::ShutdownWrite() { shutdown(fd_, SHUT_WR); }

void Peer::SendRaw(std::string_view bytes) {
  size_t off = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (off < bytes.size() && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pump_->RunFor(1);  // let the other end read
    } else {
      return;  // the other end is gone
    }
  }
}

void Peer::Send(std::string_view data) {
  if (!tls_) {
    SendRaw(data);
    return;
  }
  // Empty: only what TLS has queued (close_notify after Shutdown()).
  if (!data.empty()) EXPECT_TRUE(tls_->WritePlaintext(data).ok());
  std::string wire;
  tls_->TakeCiphertext(&wire);
  SendRaw(wire);
}

void Peer::Step() {
  pump_->RunFor(1);
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      if (tls_) {
        tls_->FeedCiphertext(std::string_view(buf, static_cast<size_t>(n)));
      } else {
        received_.append(buf, static_cast<size_t>(n));
      }
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof_ = true;
    break;
  }
  if (tls_) {
    if (!tls_->handshake_done()) tls_->DoHandshake();
    if (tls_->handshake_done()) (void)tls_->ReadPlaintext(&received_);
    std::string wire;
    tls_->TakeCiphertext(&wire);
    if (!wire.empty()) SendRaw(wire);
  }
}

bool Peer::ReadUntil(std::string_view needle, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (received_.find(needle) == std::string::npos) {
    if (eof_ || std::chrono::steady_clock::now() >= deadline) return false;
    Step();
  }
  return true;
}

bool Peer::WaitEof(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!eof_) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    Step();
  }
  return true;
}

std::string Peer::Take() {
  std::string out;
  out.swap(received_);
  return out;
}

void Peer::StartTlsClient(TlsClientContext* ctx, std::string_view host) {
  tls_ = std::make_unique<TlsSession>(ctx, host);
  tls_->DoHandshake();  // the ClientHello
  std::string wire;
  tls_->TakeCiphertext(&wire);
  SendRaw(wire);
}

void Peer::StartTlsServer(TlsServerContext* ctx) { tls_ = std::make_unique<TlsSession>(ctx); }

bool Peer::Handshake(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!tls_->handshake_done()) {
    if (eof_ || !tls_->failure_reason().empty() || std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    Step();
  }
  return true;
}

}  // namespace postern::engine::ring_test
