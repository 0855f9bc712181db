// RingSender: the sending half of one socket on an IoRing. The
// owner appends bytes to pending(); Send() hands all of them to one ring
// send, and whatever is appended meanwhile waits for the next one. A short
// send is finished first (OnSent()), so the peer gets the bytes in order.
//
// The owner counts the op among its operations in flight: Send() and
// OnSent() return true when they put the op on the ring, and the op
// completes once for each such true.
//
// Owned by one connection, loop thread only. The ring and
// the op must outlive the sender; the op's completions are the owner's to
// pass to OnSent().
#ifndef POSTERN_ENGINE_NET_RING_SENDER_H_
#define POSTERN_ENGINE_NET_RING_SENDER_H_

#include <cstddef>
#include <string>

#include "engine/net/io_ring.h"

namespace postern::engine {

class RingSender {
 public:
  RingSender(IoRing* ring, IoOp* op) : ring_(ring), op_(op) {}
  RingSender(const RingSender&) = delete;
  RingSender& operator=(const RingSender&) = delete;

  // Bytes for the socket, after those already given.
  std::string* pending() { return &pending_; }
  // Nothing to send and no send in flight.
  bool idle() const { return !busy_ && pending_.empty(); }

  // Sends pending() on `fd` unless a send is in flight or nothing is
  // pending; true if it did.
  bool Send(int fd);
  // The op completed with `res` (bytes written, or -errno). True when the
  // rest of a short send went out again at once. False when no send is in
  // flight any more: all was written, or `res` < 0, or `resend` is false
  // (the owner is closing and wants nothing more on the socket).
  bool OnSent(int fd, int res, bool resend);

 private:
  IoRing* ring_;
  IoOp* op_;
  std::string pending_;   // not yet handed to the ring
  std::string inflight_;  // the bytes of the send in flight
  size_t inflight_sent_ = 0;
  bool busy_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_RING_SENDER_H_
