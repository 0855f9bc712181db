#include "common/rocksdb_hooks.h"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace postern {
namespace {

class NoAutoRecovery : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "PosternNoAutoRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status /*error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

class StderrLogger : public rocksdb::Logger {
 public:
  explicit StderrLogger(std::string_view prefix)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), prefix_(prefix) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[1024];
    const int n = std::vsnprintf(line, sizeof(line), format, ap);
    if (n < 0) return;
    std::fprintf(stderr, "%s: %s\n", prefix_.c_str(), line);
  }

 private:
  std::string prefix_;
};

}  // namespace

std::shared_ptr<rocksdb::EventListener> NoAutoRecoveryListener() {
  return std::make_shared<NoAutoRecovery>();
}

std::shared_ptr<rocksdb::Logger> StderrInfoLog(std::string_view prefix) {
  return std::make_shared<StderrLogger>(prefix);
}

}  // namespace postern
