// What a Config means when the admin left something out, and which configs
// make sense at all.
//
//   DefaultConfigYaml()  the YAML posternd runs with when started without
//                        --config (docs/CONFIG.md "Embedded defaults"). It is YAML,
//                        not a prebuilt message, so it goes through the same
//                        loader and checks as any admin's file.
//   ApplyDefaults()      fills each field the admin did not set with the
//                        default documented in proto/config.proto.
//   ValidateConfig()     checks values the schema cannot express (addresses,
//                        CIDRs, domains, pins, uniqueness, ranges).
//   ValidateNodeConfig() what a running node needs beyond that (listeners).
//
// ParseConfigYaml/LoadConfigFile (config_loader.h) already call both; call
// them directly only for a Config that arrived some other way (e.g. over the
// admin API).
//
// Thread-safety: all functions are reentrant. ApplyDefaults reads the host
// name (gethostname) and nothing else from the environment.
#ifndef POSTERN_CONTROL_CONFIG_DEFAULTS_H_
#define POSTERN_CONTROL_CONFIG_DEFAULTS_H_

#include <string_view>

#include "absl/status/status.h"
#include "proto/config.pb.h"

namespace postern::control {

// The embedded default config file. Static storage; never freed.
std::string_view DefaultConfigYaml();

// Sets every field that still has its proto3 zero value (0, "", *_UNSPECIFIED,
// an absent Duration, an empty retry_schedule) to its default:
//   node.name                  gethostname(), "localhost" if that fails
//   node.data_dir              ./var/postern
//   node.hostname              node.name
//   node.drain_timeout         30s
//   node.workers               left at 0: "one per core" is decided where the
//                              workers are started, not here
//   listeners[].tls / .auth    offer / none
//   tls.min_version / ciphers  1.2 / pfs
//   delivery.smtp_port         25
//   delivery.max_queue_lifetime 120h, tls_failure_max_defer 24h
//   delivery.retry_schedule    1m, 5m, 15m, 30m, 1h (then the last, repeated)
//   delivery.default_tls       opportunistic
//   partners[].outbound        tls from delivery.default_tls, min_version and
//                              ciphers from tls: a partner entry without an
//                              outbound policy is delivered to like anyone else
//   limits                     max_message_size 50MB (52428800),
//                              max_recipients 1000, max_connections_per_ip 100,
//                              command_timeout 5m, max_connections 10000
//   control.admin_socket       <data_dir>/admin.sock
//   control.metrics_listen     127.0.0.1:9464
// Listeners are not added: a config file lists the listeners it wants.
// Idempotent.
void ApplyDefaults(postern::config::v1::Config* config);

// Checks a config that went through ApplyDefaults (empty required fields are
// reported, not defaulted). OK, or InvalidArgumentError whose message is
// always "<key path>: <problem>", e.g.
//   listeners[0].address: "1.2.3.4" is not ip:port
// The key path is written as in the YAML file so the loader can point at the
// line; the first problem found is reported.
absl::Status ValidateConfig(const postern::config::v1::Config& config);

// What posternd needs to run a node from a valid config: at least one
// listener. The loader does not check it (an empty file is all defaults, a
// valid config without listeners); posternd does, at start, with
// --check-config and on SIGHUP. OK, or InvalidArgumentError
//   listeners: none configured; a node needs at least one SMTP listener
absl::Status ValidateNodeConfig(const postern::config::v1::Config& config);

}  // namespace postern::control

#endif  // POSTERN_CONTROL_CONFIG_DEFAULTS_H_
