// MetricsServer: the node's HTTP endpoint for Prometheus and health checks.
//   /metrics  Prometheus text format (version 0.0.4), all shards
//   /healthz  200 while posternd runs
//   /readyz   200 when every worker is up and listening, else 503
// Runs on its own thread (cpp-httplib); reads only lock-free state.
#ifndef POSTERN_CONTROL_METRICS_SERVER_H_
#define POSTERN_CONTROL_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace httplib {
class Server;
}

namespace postern::control {

class MetricsServer {
 public:
  MetricsServer(std::function<std::string()> render, std::function<bool()> ready);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds "ip:port" and starts serving on a thread. The socket has
  // SO_REUSEADDR but not SO_REUSEPORT, so an address another process listens
  // on fails ("cannot listen on ADDRESS: Address already in use"), and
  // FD_CLOEXEC, so processes posternd starts do not inherit it.
  absl::Status Start(const std::string& address);
  void Stop();

 private:
  std::function<std::string()> render_;
  std::function<bool()> ready_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_METRICS_SERVER_H_
