// Test-only: drive an IoRing from a test's own thread, and talk to code on
// the ring through the other end of a socket (a socketpair, or a loopback
// TCP connection), optionally inside TLS run in memory by the test.
//
// Everything here runs on the test's thread, which is the ring's loop
// thread: a test alternates between acting as the peer (plain syscalls on a
// nonblocking fd) and pumping the ring until some condition holds.
#ifndef POSTERN_ENGINE_NET_RING_TEST_SUPPORT_H_
#define POSTERN_ENGINE_NET_RING_TEST_SUPPORT_H_

#include <linux/time_types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/net/io_ring.h"
#include "engine/tls/tls_session.h"

namespace postern::engine::ring_test {

// A ring with a short timer armed while pumping, so RunOnce() never blocks
// longer than a few milliseconds.
class RingPump {
 public:
  RingPump();
  ~RingPump();  // waits for its own timer
  IoRing* ring() { return &ring_; }
  // Runs the ring until `done()` holds or `timeout_ms` pass; returns done().
  bool RunUntil(const std::function<bool()>& done, int timeout_ms = 5000);
  // Runs the ring for about `ms` milliseconds.
  void RunFor(int ms);

 private:
  class Timer : public IoOp {
   public:
    void OnComplete(int res, uint32_t flags) override { armed = false; }
    bool armed = false;
    __kernel_timespec ts{0, 2000000};
  };
  void ArmTimer();

  IoRing ring_;
  Timer timer_;
};

// Two connected AF_UNIX stream sockets: [0] for the code under test, [1]
// for the peer (nonblocking).
struct SocketPair {
  int fds[2] = {-1, -1};
};
SocketPair MakeSocketPair();

// A listening TCP socket on 127.0.0.1 (nonblocking, a free port).
struct LoopbackListener {
  int fd = -1;
  uint16_t port = 0;
};
LoopbackListener ListenOnLoopback();

// The peer's end of a connection: bytes as they are, or plaintext inside
// TLS once StartTls*() ran (the handshake advances as Pump() runs).
class Peer {
 public:
  Peer(RingPump* pump, int fd) : pump_(pump), fd_(fd) {}
  ~Peer();
  int fd() const { return fd_; }

  // Sends now (plaintext, or encrypted once TLS is up; empty under TLS:
  // just what the session queued, e.g. close_notify).
  void Send(std::string_view data);
  // Pumps the ring and reads until what was read (since the last Take())
  // contains `needle`; false on timeout or EOF before it.
  bool ReadUntil(std::string_view needle, int timeout_ms = 5000);
  // Pumps until the other end closed (EOF or error); true if it did.
  bool WaitEof(int timeout_ms = 5000);
  // Everything read so far (plaintext under TLS), and forgets it.
  std::string Take();
  const std::string& received() const { return received_; }
  void ShutdownWrite();
  void Close();

  // TLS on this end, driven through the socket as the ring runs.
  void StartTlsClient(TlsClientContext* ctx, std::string_view host);
  void StartTlsServer(TlsServerContext* ctx);
  // Pumps until the handshake finished or failed; true if established.
  bool Handshake(int timeout_ms = 5000);
  TlsSession* tls() { return tls_.get(); }

 private:
  // One round: pump the ring briefly, read what arrived, move TLS bytes.
  void Step();
  void SendRaw(std::string_view bytes);

  RingPump* pump_;
  int fd_;
  bool eof_ = false;
  std::unique_ptr<TlsSession> tls_;
  std::string received_;
};

}  // namespace postern::engine::ring_test

#endif  // POSTERN_ENGINE_NET_RING_TEST_SUPPORT_H_
