// The config loader: YAML text in, a complete and validated
// postern::config::v1::Config out. proto/config.proto is the only definition
// of the file format; this loader maps YAML onto it generically by protobuf
// reflection, so a field added to the proto is a new YAML key with no change
// here.
//
// Mapping (YAML keys are the proto field names, case-sensitive):
//   message field          a YAML map; null (`key:` with nothing) = empty message
//   repeated field         a YAML sequence; null = empty
//   string                 any scalar, taken verbatim
//   bool                   true / false only. yes/no/on/off are refused with a
//                          message: YAML 1.1 reads them as booleans and 1.2 as
//                          strings, so they mean different things to different
//                          tools.
//   integers               decimal digits (a leading '-' only for signed types)
//   [(allow_auto) = true]  also "auto", which stores 0
//   [(byte_size) = true]   also a number with a unit: B, K/KB/KiB, M/MB/MiB,
//                          G/GB/GiB, T/TB/TiB (case-insensitive, space allowed
//                          before the unit). Every unit is a power of 1024:
//                          "50MB" is 52428800 bytes. Decimal (1000-based)
//                          sizes are not offered because admins reading
//                          "50MB" next to Postfix's message_size_limit or
//                          nginx's client_max_body_size expect 1024-based.
//   enum                   the value name without the enum's prefix, any case:
//                          ListenerTls "offer" -> LISTENER_TLS_OFFER,
//                          TlsVersion "1.2" -> TLS_VERSION_1_2 ('.' and '-'
//                          read as '_'). *_UNSPECIFIED is never accepted.
//   google.protobuf.Duration  integer-unit pairs, lower case, no spaces:
//                          "500ms", "30s", "5m", "1h30m", "120h", "2d".
//                          A bare number is refused (the unit is not guessed).
//
// One YAML document per file. Anchors and aliases work (&a ... *a); an alias
// to a node that contains it would be a cycle and is an error. Tags are
// ignored.
//
// Afterwards ApplyDefaults and ValidateConfig (control/config_defaults.h) run,
// so both functions return what posternd runs with. A key written with the
// proto's zero value ("", 0) that ApplyDefaults would replace is an error: in
// proto3 "max_message_size: 0" cannot be told apart from an absent key, and
// silently running with 50MB when the admin wrote 0 would be worse.
//
// Errors are absl::InvalidArgumentError with one message,
//   "<source>:<line>:<column>: <key path>: <problem>"
// e.g. `config.yaml:12:5: listeners[1].tls: unknown value "maybe" (expected
// none, offer, require, implicit)`; line and column are 1-based. Unknown keys,
// duplicate keys, values of the wrong YAML kind, YAML syntax errors and
// failed validation are all errors; the first one found is reported. A
// validation error about a key the file does not contain (a default, say)
// points at the nearest enclosing key that it does.
//
// No exception escapes: yaml-cpp's are caught and turned into statuses, so
// arbitrary bytes are safe input (see config_loader_fuzz.cc).
//
// Thread-safety: both functions are reentrant; they share no state.
#ifndef POSTERN_CONTROL_CONFIG_LOADER_H_
#define POSTERN_CONTROL_CONFIG_LOADER_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"

namespace postern::control {

// Reads the file at `path` and parses it as ParseConfigYaml does, naming the
// file by `path` in errors. A file that cannot be read is NotFound /
// PermissionDenied / FailedPrecondition as errno says; a file over 16 MiB is
// refused (a config that large is a mistake, e.g. --config /dev/zero).
absl::StatusOr<postern::config::v1::Config> LoadConfigFile(const std::string& path);

// Parses `yaml` (one YAML document; an empty or comment-only text means "all
// defaults"). `source_name` only labels error messages.
absl::StatusOr<postern::config::v1::Config> ParseConfigYaml(std::string_view yaml,
                                                            std::string_view source_name);

// As above; `as_written` (if not null) also gets the message as the YAML
// wrote it, before defaults (filled once the YAML mapped; the admin API
// stores policy that way, so the file's defaults apply when it is merged).
absl::StatusOr<postern::config::v1::Config> ParseConfigYaml(
    std::string_view yaml, std::string_view source_name, postern::config::v1::Config* as_written);

}  // namespace postern::control

#endif  // POSTERN_CONTROL_CONFIG_LOADER_H_
