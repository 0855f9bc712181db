// StopSignals: SIGTERM and SIGINT as completions of a bench tool's ring, so
// stopping is one more event of the loop and never interrupts it.
//
// Init() blocks both signals for the process (call it before any thread
// starts) and opens a signalfd; Arm() queues one read of it on the ring, to
// be queued again after each completion while the loop goes on.
//
// Owned by the tool's loop object, loop thread only. The read lands in this
// object: it must outlive the read in flight (declare it after the ring).
#ifndef POSTERN_BENCH_STOP_SIGNALS_H_
#define POSTERN_BENCH_STOP_SIGNALS_H_

#include <sys/signalfd.h>

#include "absl/status/status.h"
#include "engine/net/io_ring.h"

namespace postern::bench {

class StopSignals {
 public:
  StopSignals() = default;
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  absl::Status Init();
  // `op` completes when a signal arrives.
  void Arm(engine::IoRing* ring, engine::IoOp* op);

 private:
  int fd_ = -1;
  signalfd_siginfo info_{};
};

}  // namespace postern::bench

#endif  // POSTERN_BENCH_STOP_SIGNALS_H_
