#include "engine/net/io_ring.h"

#include <sys/mman.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace postern::engine {
namespace {

// user_data for operations whose completions nobody wants (close, cancel).
constexpr uint64_t kIgnored = 0;

}  // namespace

IoRing::~IoRing() {
  if (!initialised_) return;
  if (buf_ring_ != nullptr) {
    io_uring_unregister_buf_ring(&ring_, kRecvGroup);
    munmap(buf_ring_, buf_ring_bytes_);
  }
  io_uring_queue_exit(&ring_);
  std::free(buffers_);
}

absl::Status IoRing::Init(unsigned entries, unsigned buffers, unsigned buffer_size) {
  io_uring_params params{};
  // Completions of many connections can outnumber submissions; a larger CQ
  // avoids overflow under load.
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = entries * 4;
  int rc = io_uring_queue_init_params(entries, &ring_, &params);
  if (rc < 0) return absl::ErrnoToStatus(-rc, "io_uring_queue_init");
  initialised_ = true;

  buffer_count_ = buffers;
  buffer_size_ = buffer_size;
  buf_ring_bytes_ = sizeof(io_uring_buf) * buffers;
  void* mem =
      mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap buffer ring");
  buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
  reg.ring_entries = buffers;
  reg.bgid = kRecvGroup;
  rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) {
    munmap(buf_ring_, buf_ring_bytes_);
    buf_ring_ = nullptr;
    return absl::ErrnoToStatus(-rc, "io_uring_register_buf_ring");
  }
  io_uring_buf_ring_init(buf_ring_);
  buffers_ = static_cast<char*>(std::aligned_alloc(4096, size_t{buffers} * buffer_size));
  if (buffers_ == nullptr) return absl::ResourceExhaustedError("receive buffers");
  int mask = io_uring_buf_ring_mask(buffers);
  for (unsigned i = 0; i < buffers; ++i) {
    io_uring_buf_ring_add(buf_ring_, buffers_ + size_t{i} * buffer_size, buffer_size,
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(buf_ring_, static_cast<int>(buffers));
  return absl::OkStatus();
}

io_uring_sqe* IoRing::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // Submission queue full: hand what we have to the kernel and retry.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void IoRing::Accept(int listen_fd, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Recv(int fd, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kRecvGroup;
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Send(int fd, const char* data, size_t len, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_send(sqe, fd, data, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Read(int fd, void* buf, size_t len, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(len), 0);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Connect(int fd, const struct sockaddr* addr, socklen_t len, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_connect(sqe, fd, addr, len);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Poll(int fd, unsigned events, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_add(sqe, fd, events);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Timeout(struct __kernel_timespec* ts, IoOp* op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, ts, 0, 0);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::Cancel(IoOp* target) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_cancel(sqe, target, 0);
  io_uring_sqe_set_data64(sqe, kIgnored);
}

void IoRing::Close(int fd) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_close(sqe, fd);
  io_uring_sqe_set_data64(sqe, kIgnored);
}

std::string_view IoRing::BufferData(uint32_t flags, int res) const {
  unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  return std::string_view(buffers_ + size_t{bid} * buffer_size_, static_cast<size_t>(res));
}

void IoRing::ReturnBuffer(uint32_t flags) {
  unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  io_uring_buf_ring_add(buf_ring_, buffers_ + size_t{bid} * buffer_size_, buffer_size_,
                        static_cast<unsigned short>(bid), io_uring_buf_ring_mask(buffer_count_), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

absl::Status IoRing::RunOnce() {
  int rc = io_uring_submit_and_wait(&ring_, 1);
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
    return absl::ErrnoToStatus(-rc, "io_uring_submit_and_wait");
  }
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned seen = 0;
  // Copy out before dispatch: a handler may submit, which never touches the
  // CQ, but advancing first keeps the CQ free for the kernel sooner.
  struct Done {
    IoOp* op;
    int res;
    uint32_t flags;
  };
  Done batch[256];
  unsigned n = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    auto* op = reinterpret_cast<IoOp*>(io_uring_cqe_get_data(cqe));
    if (op != nullptr) batch[n++] = Done{op, cqe->res, cqe->flags};
    if (n == 256) break;
  }
  io_uring_cq_advance(&ring_, seen);
  for (unsigned i = 0; i < n; ++i) batch[i].op->OnComplete(batch[i].res, batch[i].flags);
  return absl::OkStatus();
}

}  // namespace postern::engine
