// Fuzz target: arbitrary bytes as a config file. The loader must return a
// status for every input, never crash, hang or let an exception out (yaml-cpp
// throws; config_loader.cc catches). Seeds: testdata/config_corpus/.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "control/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<postern::config::v1::Config> config =
      postern::control::ParseConfigYaml(yaml, "fuzz.yaml");
  // A config that loaded must also survive a protobuf round trip: it crosses
  // process boundaries in that form, and proto3 refuses non-UTF-8 strings.
  if (config.ok()) {
    postern::config::v1::Config copy;
    if (!copy.ParseFromString(config->SerializeAsString())) __builtin_trap();
  }
  return 0;
}
