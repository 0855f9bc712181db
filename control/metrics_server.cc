#include "control/metrics_server.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "control/listen_probe.h"

namespace postern::control {

MetricsServer::MetricsServer(std::function<std::string()> render, std::function<bool()> ready)
    : render_(std::move(render)), ready_(std::move(ready)) {}

MetricsServer::~MetricsServer() { Stop(); }

absl::Status MetricsServer::Start(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("\"" + address + "\" is not ip:port");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::atoi(address.c_str() + colon + 1);
  server_ = std::make_unique<httplib::Server>();
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    bool ready = ready_();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });
  // cpp-httplib's default socket options set SO_REUSEPORT: a second node
  // configured with the same metrics_listen would bind beside the first
  // without an error and the kernel would split the scrapes between the two.
  // SO_REUSEADDR only (a restart must not wait out TIME_WAIT). FD_CLOEXEC
  // too, whatever the library does: the workers must never hold the port.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    fcntl(sock, F_SETFD, FD_CLOEXEC);
  });
  // bind_to_port says only yes or no; the probe says why.
  if (absl::Status probe = ProbeListenAddress(address); !probe.ok()) return probe;
  if (!server_->bind_to_port(host, port)) {
    return absl::UnavailableError("cannot listen on " + address);
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void MetricsServer::Stop() {
  if (thread_.joinable()) {
    // cpp-httplib's stop() does nothing until its thread is inside the
    // accept loop; a stop right after Start() (posternd exiting on a later
    // start-up error) would leave the thread running and this join hanging.
    // The loop starts within microseconds; the bound only guards a thread
    // that returned at once without ever running.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace postern::control
