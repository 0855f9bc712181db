// posternd: a Postern node. Loads the configuration, prepares the data
// directory, serves metrics and health, and supervises one postern-worker per
// shard (control/supervisor.h). Links gRPC/OpenSSL, never BoringSSL.
//
//   posternd [--config FILE] [--workers N] [--worker-binary PATH] [--check-config]
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/metrics_exposition.h"
#include "control/admin_service.h"
#include "control/config_defaults.h"
#include "control/config_loader.h"
#include "control/data_dir_lock.h"
#include "control/default_certificate.h"
#include "control/listen_probe.h"
#include "control/metrics_server.h"
#include "control/policy_service.h"
#include "control/policy_store/embedded_policy_store.h"
#include "control/supervisor.h"

namespace {

using postern::config::v1::Config;

struct Flags {
  std::string config_path;
  int workers = -1;
  std::string worker_binary;
  bool check_config = false;
};

void Usage() {
  std::fprintf(stderr,
               "usage: posternd [--config FILE] [--workers N] [--worker-binary PATH] "
               "[--check-config]\n");
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name) -> const char* {
      if (a == name && i + 1 < argc) return argv[++i];
      if (a.size() > name.size() + 1 && a.substr(0, name.size()) == name && a[name.size()] == '=') {
        return argv[i] + name.size() + 1;
      }
      return nullptr;
    };
    if (const char* v = value("--config")) {
      f->config_path = v;
    } else if (const char* v = value("--workers")) {
      f->workers = std::atoi(v);
      if (f->workers <= 0) return false;
    } else if (const char* v = value("--worker-binary")) {
      f->worker_binary = v;
    } else if (a == "--check-config") {
      f->check_config = true;
    } else {
      return false;
    }
  }
  return true;
}

// Parsed, defaults applied, validated (the loader does all three), and
// something a node can run: at least one listener.
absl::StatusOr<Config> LoadConfig(const std::string& path) {
  const std::string source = path.empty() ? "<embedded defaults>" : path;
  absl::StatusOr<Config> config = path.empty() ? postern::control::ParseConfigYaml(
                                                     postern::control::DefaultConfigYaml(), source)
                                               : postern::control::LoadConfigFile(path);
  if (!config.ok()) return config;
  if (absl::Status st = postern::control::ValidateNodeConfig(*config); !st.ok()) {
    return absl::InvalidArgumentError(source + ": " + std::string(st.message()));
  }
  return config;
}

// Every address the node will listen on must be free now: a listener another
// process holds would otherwise only show as workers failing and restarting
// with backoff. An address in use gets kInUseGrace in all to come free (the
// workers of a node killed a moment ago may still hold theirs).
// control.grpc_listen is not served yet; probe it here once it is.
constexpr absl::Duration kInUseGrace = absl::Seconds(2);

absl::Status ProbeAddresses(const Config& config) {
  const absl::Time deadline = absl::Now() + kInUseGrace;
  auto probe = [&](const std::string& what, const std::string& address) {
    absl::Status st = postern::control::ProbeListenAddress(
        address, std::max(deadline - absl::Now(), absl::ZeroDuration()));
    if (st.ok()) return st;
    return absl::Status(st.code(), what + ": " + std::string(st.message()));
  };
  for (const auto& l : config.listeners()) {
    if (absl::Status st = probe("listener " + l.name(), l.address()); !st.ok()) return st;
  }
  return probe("control.metrics_listen", config.control().metrics_listen());
}

// Listeners with TLS and no configured certificate use the node's default
// certificates, generated into the data dir on first start and reused.
absl::Status ResolveCertificates(Config* config) {
  bool tls = false;
  for (const auto& l : config->listeners()) {
    tls |= l.tls() != postern::config::v1::LISTENER_TLS_NONE;
  }
  if (!tls || config->tls().certificates_size() > 0) return absl::OkStatus();
  auto paths = postern::control::EnsureDefaultCertificate(config->node().data_dir(),
                                                          config->node().hostname());
  if (!paths.ok()) return paths.status();
  for (const auto& [cert, key] : paths->pairs) {
    auto* c = config->mutable_tls()->add_certificates();
    c->set_name(std::filesystem::path(cert).stem().string());
    c->set_cert_file(cert);
    c->set_key_file(key);
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> LoadNodeConfig(const std::string& path) {
  absl::StatusOr<Config> config = LoadConfig(path);
  if (!config.ok()) return config;
  absl::Status st = ResolveCertificates(&*config);
  if (!st.ok()) return st;
  return config;
}

// The worker binary sits beside posternd when installed, and in the sibling
// package directory inside bazel-bin.
std::string FindWorkerBinary() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "postern-worker";
  for (const auto& candidate :
       {self.parent_path() / "postern-worker",
        self.parent_path().parent_path() / "postern-worker" / "postern-worker"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "postern-worker";
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    Usage();
    return 2;
  }
  postern::log::SetProcessFields("proc=posternd pid=" + std::to_string(getpid()));
  absl::StatusOr<Config> config = LoadConfig(flags.config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "posternd: configuration error: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  if (flags.check_config) {
    std::printf("configuration ok\n");
    return 0;
  }

  // One posternd per data dir: the lock comes before anything else touches
  // the directory (certificates, spool, admin socket, workers). It is held
  // until posternd exits; workers do not inherit it.
  std::filesystem::path data_dir = config->node().data_dir();
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    std::fprintf(stderr, "posternd: cannot create %s: %s\n", data_dir.c_str(),
                 ec.message().c_str());
    return 2;
  }
  absl::StatusOr<postern::control::DataDirLock> lock =
      postern::control::DataDirLock::Acquire(data_dir.string());
  if (!lock.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(lock.status().message()).c_str());
    return lock.status().code() == absl::StatusCode::kFailedPrecondition ? 1 : 2;
  }
  if (absl::Status st = ProbeAddresses(*config); !st.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(st.message()).c_str());
    return 1;
  }

  // The data dir holds the spool and private keys: owner only.
  std::filesystem::create_directories(data_dir / "spool", ec);
  if (ec) {
    std::fprintf(stderr, "posternd: cannot create %s: %s\n", (data_dir / "spool").c_str(),
                 ec.message().c_str());
    return 2;
  }
  chmod(data_dir.c_str(), 0700);
  absl::Status certs = ResolveCertificates(&*config);
  if (!certs.ok()) {
    std::fprintf(stderr, "posternd: default certificate: %s\n",
                 std::string(certs.message()).c_str());
    return 2;
  }

  // Block the supervisor's signals before any thread starts (the policy
  // store's among them) so that only the main thread's signalfd sees them.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);

  // The policy managed through the API (partners for now), kept for the
  // life of the process. The effective configuration is the file's plus
  // the store's partners (control/effective_config.h).
  postern::control::EmbeddedPolicyStoreOptions store_options;
  store_options.lease_check_interval = absl::ZeroDuration();  // no leases used yet
  auto store =
      postern::control::EmbeddedPolicyStore::Open((data_dir / "control").string(), store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "posternd: policy store %s: %s\n", (data_dir / "control").c_str(),
                 std::string(store.status().message()).c_str());
    return 1;
  }
  postern::control::PolicyService policy(
      store->get(), *config, flags.config_path.empty() ? "<embedded defaults>" : flags.config_path);
  absl::StatusOr<Config> effective = policy.Effective();
  if (!effective.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(effective.status().message()).c_str());
    return 2;
  }

  postern::control::SupervisorOptions options;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  options.workers = flags.workers > 0              ? static_cast<uint32_t>(flags.workers)
                    : config->node().workers() > 0 ? config->node().workers()
                                                   : cores;
  options.worker_binary = flags.worker_binary.empty() ? FindWorkerBinary() : flags.worker_binary;
  if (!flags.config_path.empty()) {
    std::string path = flags.config_path;
    options.on_reload = [path, &policy] { (void)policy.Reload(LoadNodeConfig(path)); };
  }

  std::vector<std::string> listener_names;
  for (const auto& l : config->listeners()) listener_names.push_back(l.name());

  postern::control::Supervisor supervisor(*effective, options);
  policy.set_sink(&supervisor);
  absl::Status st = supervisor.Prepare();
  if (!st.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(st.message()).c_str());
    return 1;
  }

  postern::control::MetricsServer http(
      [&supervisor, listener_names] {
        postern::metrics::ExpositionInput in;
        in.shards = supervisor.regions();
        in.listener_names = listener_names;
        return postern::metrics::RenderPrometheus(in);
      },
      [&supervisor] { return supervisor.ready(); });
  st = http.Start(config->control().metrics_listen());
  if (!st.ok()) {
    std::fprintf(stderr, "posternd: control.metrics_listen: %s\n",
                 std::string(st.message()).c_str());
    return 1;
  }
  postern::control::AdminServer admin([&supervisor] { return supervisor.Status(); }, &supervisor);
  admin.AddService(&policy);
  st = admin.Start(config->control().admin_socket());
  if (!st.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  postern::log::LogEvent("starting")
      .Add("workers", options.workers)
      .Add("data_dir", data_dir.string())
      .Add("metrics", config->control().metrics_listen())
      .Add("admin_socket", config->control().admin_socket())
      .Emit();

  st = supervisor.Run();
  admin.Stop();
  http.Stop();
  if (!st.ok()) {
    std::fprintf(stderr, "posternd: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
