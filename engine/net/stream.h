// Stream: one connected socket on the worker's ring, with an optional TLS
// session in memory. Every connection of the project (the inbound server,
// the outbound client, the benchmark sink and load generator) is a Stream
// plus its protocol glue; the lifecycle below is written here once.
//
// What it owns:
//   - the fd: received with the constructor (accepted) or made by Connect();
//     closed on the ring once nothing of this stream can still complete;
//   - a multishot receive, re-armed after ENOBUFS, never after end of input;
//   - the sends (RingSender: one in flight, short sends finished first);
//   - the gate: a count of ring operations in flight. Close() stops new
//     ones; Finished() is true once the count is zero and the fd is closed,
//     and only then may the owner free the stream and its handler. Owners
//     that put operations of their own on the ring for this connection (a
//     reply timer) count them with Enter()/Leave();
//   - an optional TlsSession: server or client side, started at once
//     (implicit TLS) or later (STARTTLS). Plaintext written before the
//     handshake finishes waits for it.
//
// End of input: the peer's EOF (or TLS close_notify) is reported once with
// OnStreamEnd(); the stream stays open for sending, so a peer that shuts
// down its sending half after its last pipelined commands still gets every
// reply. The handler decides when to close (usually CloseAfterFlush()).
//
// Re-entrancy: handler callbacks run from ring completions or from inside
// Stream calls (StartTls, Flush); a handler may call any Stream method from
// a callback, Close() included. After Close() no further data callbacks come.
//
// Threading: the loop thread only. The ring, the handler and any TLS context
// must outlive the stream.
#ifndef POSTERN_ENGINE_NET_STREAM_H_
#define POSTERN_ENGINE_NET_STREAM_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/net/io_ring.h"
#include "engine/net/ring_sender.h"
#include "engine/net/socket_address.h"

namespace postern::engine {

class TlsSession;
class TlsServerContext;
class TlsClientContext;

// How the peer's input ended.
enum class StreamEnd {
  kEof,        // EOF on the socket (inside TLS too: SMTP's QUIT makes truncation moot)
  kTlsClosed,  // TLS close_notify
  kError,      // a socket error or a fatal TLS error
};

// OnTlsFailed()'s reason when the input ended during the handshake.
inline constexpr std::string_view kTlsEofReason = "eof";

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // Plaintext from the peer (after TLS once it is on).
  virtual void OnStreamData(std::string_view data) = 0;
  // No more input will come. `detail`: the error for kError, else empty.
  virtual void OnStreamEnd(StreamEnd how, std::string_view detail) = 0;
  // The TLS handshake finished; stream->tls() has the facts. Plaintext that
  // came in the same flight follows as OnStreamData().
  virtual void OnTlsEstablished() {}
  // The handshake failed: `reason` is TlsSession::failure_reason(), or
  // kTlsEofReason when the peer closed or the socket failed during it. The
  // alert is queued and the stream closes once it is sent, unless the
  // handler closes sooner.
  virtual void OnTlsFailed(std::string_view reason) {}
  // Connect() finished: 0, or -errno.
  virtual void OnConnected(int res) {}
  // A send failed with -errno (the peer is gone). The stream closes right
  // after this returns.
  virtual void OnSendFailed(int err) {}
  // Bytes read from the socket (ciphertext under TLS), for counters.
  virtual void OnWireBytes(size_t n) {}
  // Called once when the stream starts closing, whoever closed it.
  virtual void OnStreamClosing() {}
  // After every ring completion of the stream, as the very last step: the
  // owner may free finished connections here (the stream is not touched
  // after this returns).
  virtual void OnCompletionDone() {}
};

class Stream {
 public:
  // `fd`: a connected or accepted socket (owned), or -1 before Connect().
  Stream(IoRing* ring, StreamHandler* handler, int fd = -1);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Client side: makes a nonblocking socket for `addr` and connects it on
  // the ring; OnConnected() follows, and on success reading starts. An error
  // here means no operation was started (socket() failed).
  absl::Status Connect(const SocketAddress& addr);
  // Arms the receive (accepted sockets; Connect() does it itself).
  void StartReading();

  // TLS from now on. Server side: waits for the ClientHello; `early` holds
  // ciphertext that already arrived (behind a PROXY header). Client side:
  // sends the ClientHello at once; `host` is the SNI and session-cache key.
  void StartTlsServer(TlsServerContext* ctx, std::string_view early = {});
  void StartTlsClient(TlsClientContext* ctx, std::string_view host);

  // Plaintext to send: append, then Flush().
  std::string* out() { return &out_; }
  // Moves out() through TLS (once the handshake is done) onto the wire.
  void Flush();
  // Sends what is queued (TLS close_notify included), then closes.
  void CloseAfterFlush();
  // Closes now: stops reading, shuts the socket down (a send stuck on a
  // peer that does not read fails), drops what was not sent.
  void Close();

  // Owner's own ring operations for this connection, counted by the gate.
  void Enter() { ++inflight_; }
  void Leave() {
    --inflight_;
    MaybeFinish();
  }

  int fd() const { return fd_; }
  bool connected() const { return connected_; }
  bool closing() const { return closing_; }
  bool close_pending() const { return close_after_flush_; }
  bool input_ended() const { return input_ended_; }
  // No send queued or in flight: the kernel took every byte Flush() put on
  // the wire (plaintext held in out() during a handshake aside). Checked
  // from OnCompletionDone(), it times when the owner's last bytes left.
  bool send_idle() const { return sender_.idle(); }
  // TLS state: none started, handshaking, or established.
  bool tls_started() const { return tls_ != nullptr; }
  bool tls_handshaking() const { return tls_ != nullptr && !tls_on_; }
  bool tls_on() const { return tls_on_; }
  TlsSession* tls() const { return tls_.get(); }
  // True once closed and no ring operation is in flight: safe to delete.
  bool Finished() const { return closing_ && inflight_ == 0 && fd_closed_; }

 private:
  class Op : public IoOp {
   public:
    enum Kind { kConnect, kRecv, kSend };
    Op(Stream* s, Kind k) : s_(s), k_(k) {}
    void OnComplete(int res, uint32_t flags) override;

   private:
    Stream* s_;
    Kind k_;
  };

  void OnConnect(int res);
  void OnRecv(int res, uint32_t flags);
  void OnSent(int res);
  void ArmRecv();
  void HandleCiphertext(std::string_view data);
  void ReadPlaintext();
  void EndInput(StreamEnd how, std::string_view detail);
  void MaybeFinish();

  IoRing* ring_;
  StreamHandler* handler_;
  int fd_;
  SocketAddress addr_;  // Connect()'s target; the ring reads it until completion
  std::unique_ptr<TlsSession> tls_;
  bool tls_on_ = false;
  bool tls_shutdown_sent_ = false;
  std::string out_;        // plaintext not yet through TLS
  std::string plaintext_;  // decrypted input, reused
  Op connect_op_{this, Op::kConnect};
  Op recv_op_{this, Op::kRecv};
  Op send_op_{this, Op::kSend};
  RingSender sender_{ring_, &send_op_};  // the wire bytes, in order
  int inflight_ = 0;
  bool connecting_ = false;
  bool connected_ = false;
  bool recv_armed_ = false;
  bool input_ended_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool fd_closed_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_STREAM_H_
