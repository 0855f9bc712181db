// IoRing: the worker's io_uring, the only way the event loop does I/O.
//
// Every submitted operation carries a pointer to an IoOp as user_data; when
// its completion arrives the ring calls op->OnComplete(res, flags). An IoOp
// must stay alive until its last completion (a multishot op may complete many
// times; the last one lacks IORING_CQE_F_MORE). Owners count their in-flight
// ops and free themselves only at zero (the owning stream or connection).
//
// Provided buffers: one buffer ring (group kRecvGroup) that multishot receives
// pick from; a completion's buffer must be handed back with ReturnBuffer()
// once its bytes are copied out.
//
// Threading: single-threaded; owned by the worker's loop thread.
#ifndef POSTERN_ENGINE_NET_IO_RING_H_
#define POSTERN_ENGINE_NET_IO_RING_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

namespace postern::engine {

class IoOp {
 public:
  virtual ~IoOp() = default;
  virtual void OnComplete(int res, uint32_t flags) = 0;
};

class IoRing {
 public:
  static constexpr uint16_t kRecvGroup = 1;

  IoRing() = default;
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // entries: submission queue size. buffers x buffer_size bytes are
  // registered as the receive buffer ring (buffers must be a power of two).
  absl::Status Init(unsigned entries, unsigned buffers, unsigned buffer_size);

  void Accept(int listen_fd, IoOp* op);  // multishot accept
  void Recv(int fd, IoOp* op);           // multishot recv, provided buffers
  void Send(int fd, const char* data, size_t len, IoOp* op);
  void Read(int fd, void* buf, size_t len, IoOp* op);
  void Timeout(struct __kernel_timespec* ts, IoOp* op);  // ts must outlive the op
  // Nonblocking connect of `fd`; addr must outlive the op. res: 0 or -errno.
  void Connect(int fd, const struct sockaddr* addr, socklen_t len, IoOp* op);
  // One-shot poll for `events` (POLLIN/POLLOUT): the resolver's sockets.
  void Poll(int fd, unsigned events, IoOp* op);
  void Cancel(IoOp* target);  // completes with no callback
  void Close(int fd);         // fire-and-forget close

  // The bytes of a receive completion with IORING_CQE_F_BUFFER, and their return.
  std::string_view BufferData(uint32_t flags, int res) const;
  void ReturnBuffer(uint32_t flags);

  // Submits pending SQEs, waits for at least one completion, dispatches all
  // that are ready. Returns an error only if the ring itself fails.
  absl::Status RunOnce();

 private:
  io_uring_sqe* Sqe();

  io_uring ring_{};
  bool initialised_ = false;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  char* buffers_ = nullptr;
  unsigned buffer_count_ = 0;
  unsigned buffer_size_ = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_IO_RING_H_
