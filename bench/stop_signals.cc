#include "bench/stop_signals.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace postern::bench {

StopSignals::~StopSignals() {
  if (fd_ >= 0) close(fd_);
}

absl::Status StopSignals::Init() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  fd_ = signalfd(-1, &mask, SFD_CLOEXEC);
  if (fd_ < 0) return absl::ErrnoToStatus(errno, "signalfd");
  return absl::OkStatus();
}

void StopSignals::Arm(engine::IoRing* ring, engine::IoOp* op) {
  ring->Read(fd_, &info_, sizeof info_, op);
}

}  // namespace postern::bench
