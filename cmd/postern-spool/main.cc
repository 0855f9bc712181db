// postern-spool: looks into one shard's spool, also while its worker runs.
//
//   postern-spool --dir <data_dir>/spool/<shard> [--json] list
//   postern-spool --dir <data_dir>/spool/<shard> body <queue_id>
//   postern-spool --dir <data_dir>/spool/<shard> count
//
// list: one line per message, oldest first: queue id, sender ("<>" for the
//   null sender), recipients (comma separated), body size; tab separated.
//   With --json, one JSON object per line with queue_id, sender, recipients,
//   body_size, arrival_time (RFC 3339, UTC).
// body: the body bytes, exactly as spooled, on stdout.
// count: the number of messages.
// Corrupt records are reported on stderr and skipped. Exit status 0 on
// success, 1 on any error (with a message on stderr).
//
// It opens the spool through SpoolStore::OpenReadOnly (a RocksDB secondary
// instance) and so sees what was durable when it started.
#include <google/protobuf/util/json_util.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/json_string.h"
#include "common/proto_time.h"
#include "proto/queue.pb.h"
#include "queue/spool_store.h"

namespace postern {
namespace {

constexpr char kUsage[] =
    "usage: postern-spool --dir <data_dir>/spool/<shard> [--json] list\n"
    "       postern-spool --dir <data_dir>/spool/<shard> show <queue-id>\n"
    "       postern-spool --dir <data_dir>/spool/<shard> body <queue_id>\n"
    "       postern-spool --dir <data_dir>/spool/<shard> count\n";

int Fail(std::string_view message) {
  std::fprintf(stderr, "postern-spool: %.*s\n", static_cast<int>(message.size()), message.data());
  return 1;
}

int Fail(const absl::Status& status) { return Fail(status.ToString()); }

std::string ArrivalTime(const queue::v1::Envelope& e) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", FromProtoTimestamp(e.arrival_time()),
                          absl::UTCTimeZone());
}

std::string ListLine(const queue::v1::Envelope& e, bool json) {
  std::vector<std::string> recipients;
  for (const auto& r : e.recipients()) recipients.push_back(r.address());
  std::string line;
  if (!json) {
    absl::StrAppend(&line, e.queue_id(), "\t", e.sender().empty() ? "<>" : e.sender(), "\t",
                    absl::StrJoin(recipients, ","), "\t", e.body_size(), "\n");
    return line;
  }
  line = "{\"queue_id\":";
  AppendJsonString(e.queue_id(), &line);
  line += ",\"sender\":";
  AppendJsonString(e.sender(), &line);
  line += ",\"recipients\":[";
  for (size_t i = 0; i < recipients.size(); ++i) {
    if (i > 0) line += ",";
    AppendJsonString(recipients[i], &line);
  }
  absl::StrAppend(&line, "],\"body_size\":", e.body_size(), ",\"arrival_time\":");
  AppendJsonString(ArrivalTime(e), &line);
  line += "}\n";
  return line;
}

bool WriteAll(std::string_view bytes) {
  return std::fwrite(bytes.data(), 1, bytes.size(), stdout) == bytes.size();
}

int Run(int argc, char** argv) {
  std::string dir;
  bool json = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--dir") {
      if (++i >= argc) return Fail("--dir needs a value");
      dir = argv[i];
    } else if (arg.substr(0, 6) == "--dir=") {
      dir = std::string(arg.substr(6));
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return Fail(absl::StrCat("unknown flag ", std::string(arg), "\n", kUsage));
    } else {
      args.emplace_back(arg);
    }
  }
  if (dir.empty()) return Fail(absl::StrCat("--dir is required\n", kUsage));
  if (args.empty()) return Fail(absl::StrCat("missing command\n", kUsage));
  const std::string& command = args[0];
  const size_t want_args = command == "body" || command == "show" ? 2 : 1;
  if (command != "list" && command != "body" && command != "count" && command != "show") {
    return Fail(absl::StrCat("unknown command ", command, "\n", kUsage));
  }
  if (args.size() != want_args) return Fail(absl::StrCat("wrong arguments\n", kUsage));

  auto store = queue::SpoolStore::OpenReadOnly(dir);
  if (!store.ok()) return Fail(store.status());

  if (command == "show") {
    // The whole envelope (DSN parameters, client, TLS facts...) as JSON.
    auto env = (*store)->ReadEnvelope(args[1]);
    if (!env.ok()) return Fail(env.status());
    std::string out;
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(*env, &out, opts).ok()) {
      return Fail("cannot render the envelope");
    }
    out += "\n";
    if (!WriteAll(out) || std::fflush(stdout) != 0) return Fail("writing stdout failed");
    return 0;
  }

  if (command == "body") {
    auto body = (*store)->ReadBody(args[1]);
    if (!body.ok()) return Fail(body.status());
    if (!WriteAll(*body) || std::fflush(stdout) != 0) return Fail("writing stdout failed");
    return 0;
  }

  uint64_t count = 0;
  bool write_failed = false;
  std::vector<std::string> corrupt;
  absl::Status walked = (*store)->ForEachEnvelope(
      [&](const queue::v1::Envelope& e) {
        ++count;
        if (command == "list" && !WriteAll(ListLine(e, json))) {
          write_failed = true;
          return absl::CancelledError("stdout");
        }
        return absl::OkStatus();
      },
      &corrupt);
  if (write_failed) return Fail("writing stdout failed");
  if (!walked.ok()) return Fail(walked);
  if (command == "count") std::printf("%llu\n", static_cast<unsigned long long>(count));
  if (std::fflush(stdout) != 0) return Fail("writing stdout failed");
  for (const auto& id : corrupt) {
    std::fprintf(stderr, "postern-spool: corrupt envelope skipped: %s\n", id.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace postern

int main(int argc, char** argv) { return postern::Run(argc, argv); }
