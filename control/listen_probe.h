// ProbeListenAddress: would a TCP listener open on this address now? posternd
// asks before it starts any worker, so that an SMTP listener address another
// process holds stops the node at once with the address and the error,
// instead of workers that fail to bind and are restarted with backoff.
//
// The probe binds a socket WITHOUT SO_REUSEPORT and closes it at once: any
// process listening there, even one that set SO_REUSEPORT (another Postern
// node, say), makes the bind fail with EADDRINUSE. It sets SO_REUSEADDR and,
// for IPv6, IPV6_V6ONLY, like the workers' listeners, so that connections in
// TIME_WAIT from an earlier run do not count. The socket is never listened
// on, so it takes no connection away from anybody.
//
// An address in use is tried again every 50 ms for up to `in_use_grace`: a
// node killed a moment ago may still hold its listeners for a moment (a
// process's io_uring, and the sockets its pending accepts hold, can be torn
// down after the process itself is gone).
//
// The answer is a snapshot: a process can still take the address between the
// probe and the worker's bind; the worker then fails and is restarted as
// before.
//
// Thread-safety: reentrant.
#ifndef POSTERN_CONTROL_LISTEN_PROBE_H_
#define POSTERN_CONTROL_LISTEN_PROBE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace postern::control {

// `address` is "ip:port" or "[ipv6]:port" (a validated config's form). OK,
// or an error whose message is "cannot listen on ADDRESS: STRERROR", e.g.
//   cannot listen on 127.0.0.1:2525: Address already in use
absl::Status ProbeListenAddress(const std::string& address,
                                absl::Duration in_use_grace = absl::ZeroDuration());

}  // namespace postern::control

#endif  // POSTERN_CONTROL_LISTEN_PROBE_H_
