// DeliveryTransport: how the queue manager hands one destination of one
// message to the network, and how it learns what happened to each of its
// recipients. The real transport (engine/outbound/outbound_transport.h) resolves the
// next hop, reuses connections and runs the SMTP client under the
// destination's TLS policy; unit tests substitute a scripted one.
//
// Threading: the worker's loop thread. `done` is called exactly once per
// Deliver(), never from inside Deliver() itself (the manager may be in the
// middle of starting several jobs), with one AttemptResult per job recipient
// in job order.
#ifndef POSTERN_QUEUE_DELIVERY_TRANSPORT_H_
#define POSTERN_QUEUE_DELIVERY_TRANSPORT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/queue.pb.h"
#include "queue/recipient_outcome.h"

namespace postern::queue {

struct DeliveryJob {
  std::string queue_id;
  std::string domain;  // lower-cased recipient domain: the destination
  // Shared with the other destinations of the same message; alive until
  // every job of the message is done.
  std::shared_ptr<const v1::Envelope> envelope;
  std::shared_ptr<const std::string> body;
  std::vector<int> recipients;  // indexes into envelope->recipients()
};

class DeliveryTransport {
 public:
  using Done = std::function<void(std::vector<AttemptResult>)>;
  virtual ~DeliveryTransport() = default;
  virtual void Deliver(DeliveryJob job, Done done) = 0;
  // Called on every worker tick (timeouts, idle connection reaping).
  virtual void Tick(int64_t now_ms) {}
  // Stop starting work; close idle connections (drain).
  virtual void Shutdown() {}
};

}  // namespace postern::queue

#endif  // POSTERN_QUEUE_DELIVERY_TRANSPORT_H_
