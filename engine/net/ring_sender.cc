#include "engine/net/ring_sender.h"

namespace postern::engine {

bool RingSender::Send(int fd) {
  if (busy_ || pending_.empty()) return false;
  inflight_.swap(pending_);
  pending_.clear();
  inflight_sent_ = 0;
  busy_ = true;
  ring_->Send(fd, inflight_.data(), inflight_.size(), op_);
  return true;
}

bool RingSender::OnSent(int fd, int res, bool resend) {
  busy_ = false;
  if (!resend || res < 0) return false;
  inflight_sent_ += static_cast<size_t>(res);
  if (inflight_sent_ < inflight_.size()) {
    busy_ = true;
    ring_->Send(fd, inflight_.data() + inflight_sent_, inflight_.size() - inflight_sent_, op_);
    return true;
  }
  inflight_.clear();
  return false;
}

}  // namespace postern::engine
