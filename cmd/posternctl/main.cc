// posternctl: the admin CLI, a thin client of the gRPC admin API.
//
//   posternctl [--server ADDR] [--json] status
//   posternctl [--server ADDR] [--json] queue list [--sender S] [--domain D]
//       [--state active|deferred|held] [--min-age DURATION] [--limit N] [--after ID]
//   posternctl [--server ADDR] [--json] queue show ID
//   posternctl [--server ADDR] [--json] queue retry|hold|release|delete|bounce ID...
//   posternctl [--server ADDR] [--json] apply -f FILE [--dry-run] [--expect-revision R]
//   posternctl [--server ADDR] [--json] policy show
//   posternctl [--server ADDR] [--json] policy history [--limit N]
//   posternctl [--server ADDR] [--json] policy rollback REVISION [--expect-revision R]
//   posternctl [--server ADDR] [--json] partner list
//   posternctl [--server ADDR] [--json] partner delete DOMAIN [--expect-revision R]
//
// ADDR: "unix:/path/admin.sock" (default unix:./var/postern/admin.sock, the
// embedded defaults' data dir) or a plain path to the socket. --json prints
// the reply message in the proto3 JSON mapping. DURATION: 90s, 30m, 1h30m,
// 2d, or plain seconds. queue list without --limit prints the whole queue,
// fetched a page at a time.
//
// Exit status: 0 on success, 1 when the node refused or failed a request (an
// action fails for any of its ids), 2 for a usage error. A refused policy
// call prints the gRPC status code name and message ("ABORTED: ...").
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "proto/admin.grpc.pb.h"

namespace {

namespace admin = postern::admin::v1;
namespace qv1 = postern::queue::v1;

constexpr char kUsage[] =
    "usage: posternctl [--server ADDR] [--json] status\n"
    "       posternctl [--server ADDR] [--json] queue list [--sender S] [--domain D]\n"
    "                  [--state active|deferred|held] [--min-age DURATION] [--limit N] "
    "[--after ID]\n"
    "       posternctl [--server ADDR] [--json] queue show ID\n"
    "       posternctl [--server ADDR] [--json] queue retry|hold|release|delete|bounce ID...\n"
    "       posternctl [--server ADDR] [--json] apply -f FILE [--dry-run] [--expect-revision R]\n"
    "       posternctl [--server ADDR] [--json] policy show\n"
    "       posternctl [--server ADDR] [--json] policy history [--limit N]\n"
    "       posternctl [--server ADDR] [--json] policy rollback REVISION [--expect-revision R]\n"
    "       posternctl [--server ADDR] [--json] partner list\n"
    "       posternctl [--server ADDR] [--json] partner delete DOMAIN [--expect-revision R]\n";

constexpr uint32_t kPageSize = 1000;  // the server's maximum page

int Usage() {
  std::fputs(kUsage, stderr);
  return 2;
}

void SetDeadline(grpc::ClientContext* ctx) {
  // The node waits up to 10 s for its workers; leave room for the answer.
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
}

int RpcFailed(const grpc::Status& st) {
  std::fprintf(stderr, "posternctl: %s\n", st.error_message().c_str());
  return 1;
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  std::printf("%s\n", out.c_str());
}

std::string StateName(admin::WorkerState s) {
  switch (s) {
    case admin::WORKER_STATE_STARTING:
      return "starting";
    case admin::WORKER_STATE_READY:
      return "ready";
    case admin::WORKER_STATE_RESTARTING:
      return "restarting";
    case admin::WORKER_STATE_STOPPED:
      return "stopped";
    default:
      return "unknown";
  }
}

int Status(admin::Admin::Stub* stub, bool json) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  admin::GetStatusResponse resp;
  grpc::Status st = stub->GetStatus(&ctx, admin::GetStatusRequest(), &resp);
  if (!st.ok()) return RpcFailed(st);
  if (json) {
    PrintJson(resp);
    return 0;
  }
  std::printf("node %s  config v%llu  %s%s\n", resp.node_name().c_str(),
              static_cast<unsigned long long>(resp.config_version()),
              resp.ready() ? "ready" : "not ready", resp.draining() ? " (draining)" : "");
  std::printf("%-6s %-8s %-11s %9s %9s %7s\n", "SHARD", "PID", "STATE", "RESTARTS", "SPOOLED",
              "CONFIG");
  for (const auto& w : resp.workers()) {
    std::printf("%-6u %-8u %-11s %9llu %9llu %7llu\n", w.shard(), w.pid(),
                StateName(w.state()).c_str(), static_cast<unsigned long long>(w.restarts()),
                static_cast<unsigned long long>(w.spool_messages()),
                static_cast<unsigned long long>(w.config_version()));
  }
  return 0;
}

// --- queue ---

const char* MessageStateName(qv1::MessageState s) {
  switch (s) {
    case qv1::MESSAGE_STATE_ACTIVE:
      return "active";
    case qv1::MESSAGE_STATE_DEFERRED:
      return "deferred";
    case qv1::MESSAGE_STATE_HELD:
      return "held";
    default:
      return "unknown";
  }
}

const char* RecipientStateName(qv1::RecipientState s) {
  switch (s) {
    case qv1::RECIPIENT_STATE_PENDING:
      return "pending";
    case qv1::RECIPIENT_STATE_DELIVERED:
      return "delivered";
    case qv1::RECIPIENT_STATE_DEFERRED:
      return "deferred";
    case qv1::RECIPIENT_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

// "45s", "12m", "3h05m", "2d04h": wide enough to compare at a glance.
std::string CompactAge(uint64_t seconds) {
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrCat(seconds / 60, "m");
  if (seconds < 86400) return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  return absl::StrFormat("%dd%02dh", seconds / 86400, seconds % 86400 / 3600);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", postern::FromProtoTimestamp(t),
                          absl::UTCTimeZone());
}

// "90s", "1h30m" (absl), "2d", or plain seconds.
bool ParseAge(std::string_view text, uint64_t* seconds) {
  uint64_t n = 0;
  if (absl::SimpleAtoi(std::string(text), &n)) {
    *seconds = n;
    return true;
  }
  if (!text.empty() && text.back() == 'd' &&
      absl::SimpleAtoi(std::string(text.substr(0, text.size() - 1)), &n)) {
    *seconds = n * 86400;
    return true;
  }
  absl::Duration d;
  if (!absl::ParseDuration(std::string(text), &d) || d < absl::ZeroDuration()) return false;
  *seconds = static_cast<uint64_t>(absl::ToInt64Seconds(d));
  return true;
}

// Splits `args` into options ("--name value" or "--name=value", names in
// `with_value`) and positional arguments. False on an unknown option.
bool ParseOptions(const std::vector<std::string>& args,
                  const std::vector<std::string_view>& with_value,
                  std::map<std::string, std::string>* options,
                  std::vector<std::string>* positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a.size() < 3 || a.substr(0, 2) != "--") {
      positional->emplace_back(a);
      continue;
    }
    std::string_view name = a.substr(2);
    std::string value;
    bool have_value = false;
    if (size_t eq = name.find('='); eq != std::string_view::npos) {
      value = std::string(name.substr(eq + 1));
      name = name.substr(0, eq);
      have_value = true;
    }
    if (std::find(with_value.begin(), with_value.end(), name) == with_value.end()) return false;
    if (!have_value) {
      if (i + 1 >= args.size()) return false;
      value = args[++i];
    }
    (*options)[std::string(name)] = value;
  }
  return true;
}

void PrintQueueTable(const qv1::ListReply& reply) {
  if (reply.messages().empty()) {
    std::printf("Mail queue is empty\n");
    return;
  }
  // Postfix's postqueue -p layout, with the state spelled out instead of
  // the '*' and '!' markers.
  std::printf("%-17s %-9s %9s %7s  %s\n", "-Queue ID-", "-State-", "-Size-", "-Age-",
              "-Sender/Recipient-------");
  uint64_t bytes = 0;
  for (const auto& m : reply.messages()) {
    bytes += m.size();
    std::printf("%-17s %-9s %9llu %7s  %s\n", m.queue_id().c_str(), MessageStateName(m.state()),
                static_cast<unsigned long long>(m.size()), CompactAge(m.age_seconds()).c_str(),
                m.sender().empty() ? "<>" : m.sender().c_str());
    const std::string indent(47, ' ');  // under the sender column
    if (!m.last_error().empty()) std::printf("%s(%s)\n", indent.c_str(), m.last_error().c_str());
    for (const auto& r : m.recipients()) std::printf("%s%s\n", indent.c_str(), r.c_str());
    std::printf("\n");
  }
  std::printf("-- %llu Kbytes in %d Request%s.%s\n",
              static_cast<unsigned long long>((bytes + 1023) / 1024), reply.messages_size(),
              reply.messages_size() == 1 ? "" : "s",
              reply.next_after_queue_id().empty() ? "" : " (more follow: --after the last id)");
}

int QueueList(admin::Admin::Stub* stub, const std::vector<std::string>& args, bool json) {
  std::map<std::string, std::string> opt;
  std::vector<std::string> positional;
  if (!ParseOptions(args, {"sender", "domain", "state", "min-age", "limit", "after"}, &opt,
                    &positional) ||
      !positional.empty()) {
    return Usage();
  }
  qv1::ListRequest request;
  request.mutable_filter()->set_sender(opt["sender"]);
  request.mutable_filter()->set_recipient_domain(opt["domain"]);
  request.set_after_queue_id(opt["after"]);
  if (const std::string& s = opt["state"]; !s.empty()) {
    if (s == "active") {
      request.mutable_filter()->set_state(qv1::MESSAGE_STATE_ACTIVE);
    } else if (s == "deferred") {
      request.mutable_filter()->set_state(qv1::MESSAGE_STATE_DEFERRED);
    } else if (s == "held") {
      request.mutable_filter()->set_state(qv1::MESSAGE_STATE_HELD);
    } else {
      std::fprintf(stderr, "posternctl: --state must be active, deferred or held\n");
      return 2;
    }
  }
  if (const std::string& s = opt["min-age"]; !s.empty()) {
    uint64_t seconds = 0;
    if (!ParseAge(s, &seconds)) {
      std::fprintf(stderr, "posternctl: --min-age: not a duration: %s\n", s.c_str());
      return 2;
    }
    request.mutable_filter()->set_min_age_seconds(seconds);
  }
  uint64_t wanted = UINT64_MAX;  // the whole queue
  if (const std::string& s = opt["limit"]; !s.empty()) {
    if (!absl::SimpleAtoi(s, &wanted) || wanted == 0) {
      std::fprintf(stderr, "posternctl: --limit must be a positive number\n");
      return 2;
    }
  }

  // Page through until `wanted` messages or the end of the queue.
  qv1::ListReply all;
  while (true) {
    const uint64_t left = wanted - static_cast<uint64_t>(all.messages_size());
    request.set_limit(static_cast<uint32_t>(std::min<uint64_t>(left, kPageSize)));
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    qv1::ListReply page;
    grpc::Status st = stub->ListQueue(&ctx, request, &page);
    if (!st.ok()) return RpcFailed(st);
    for (auto& m : *page.mutable_messages()) *all.add_messages() = std::move(m);
    all.set_next_after_queue_id(page.next_after_queue_id());
    if (page.next_after_queue_id().empty() ||
        static_cast<uint64_t>(all.messages_size()) >= wanted) {
      break;
    }
    request.set_after_queue_id(page.next_after_queue_id());
  }
  if (json) {
    PrintJson(all);
  } else {
    PrintQueueTable(all);
  }
  return 0;
}

void PrintEnvelope(const qv1::ShowReply& reply) {
  const qv1::Envelope& e = reply.envelope();
  auto line = [](const char* key, const std::string& value) {
    if (!value.empty()) std::printf("%-14s %s\n", key, value.c_str());
  };
  line("queue id:", e.queue_id());
  line("state:", MessageStateName(reply.state()));
  line("sender:", e.sender().empty() ? "<>" : e.sender());
  line("arrival:", FormatTimestamp(e.arrival_time()));
  line("size:", absl::StrCat(e.body_size()));
  line("shard:", absl::StrCat(e.shard()));
  line("client:", e.client_address());
  line("helo:", e.helo());
  line("listener:", e.listener());
  line("auth user:", e.auth_user());
  if (!e.tls_version().empty()) line("tls:", absl::StrCat(e.tls_version(), " ", e.tls_cipher()));
  line("attempts:", absl::StrCat(e.schedule().attempts()));
  line("next attempt:",
       e.schedule().held() ? "held" : FormatTimestamp(e.schedule().next_attempt()));
  if (e.is_dsn()) line("notice:", "delivery status notification");
  std::printf("recipients:\n");
  for (const auto& r : e.recipients()) {
    std::printf("  %s  %s  attempts=%u%s%s\n", r.address().c_str(), RecipientStateName(r.state()),
                r.attempts(), r.status().empty() ? "" : "  status=", r.status().c_str());
    if (!r.last_error().empty()) std::printf("    last error: %s\n", r.last_error().c_str());
    if (!r.remote_mta().empty()) std::printf("    remote mta: %s\n", r.remote_mta().c_str());
    if (!r.tls_result().empty()) std::printf("    tls result: %s\n", r.tls_result().c_str());
  }
}

int QueueShow(admin::Admin::Stub* stub, const std::vector<std::string>& args, bool json) {
  if (args.size() != 1) return Usage();
  qv1::ShowRequest request;
  request.set_queue_id(args[0]);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  qv1::ShowReply reply;
  grpc::Status st = stub->ShowMessage(&ctx, request, &reply);
  if (!st.ok()) return RpcFailed(st);
  if (json) {
    PrintJson(reply);
  } else {
    PrintEnvelope(reply);
  }
  return 0;
}

int QueueAction(admin::Admin::Stub* stub, qv1::QueueAction action,
                const std::vector<std::string>& ids, bool json) {
  if (ids.empty()) return Usage();
  qv1::ActionRequest request;
  request.set_action(action);
  for (const auto& id : ids) request.add_queue_ids(id);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  qv1::ActionReply reply;
  grpc::Status st = stub->QueueAction(&ctx, request, &reply);
  if (!st.ok()) return RpcFailed(st);
  bool all_ok = true;
  for (const auto& r : reply.results()) all_ok &= r.ok();
  if (json) {
    PrintJson(reply);
  } else {
    for (const auto& r : reply.results()) {
      std::printf("%s: %s\n", r.queue_id().c_str(), r.ok() ? "ok" : r.error().c_str());
    }
  }
  return all_ok ? 0 : 1;
}

int Queue(admin::Admin::Stub* stub, const std::vector<std::string>& args, bool json) {
  if (args.empty()) return Usage();
  const std::string& verb = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (verb == "list") return QueueList(stub, rest, json);
  if (verb == "show") return QueueShow(stub, rest, json);
  static const std::map<std::string, qv1::QueueAction> kActions = {
      {"retry", qv1::QUEUE_ACTION_RETRY},     {"hold", qv1::QUEUE_ACTION_HOLD},
      {"release", qv1::QUEUE_ACTION_RELEASE}, {"delete", qv1::QUEUE_ACTION_DELETE},
      {"bounce", qv1::QUEUE_ACTION_BOUNCE},
  };
  auto it = kActions.find(verb);
  if (it == kActions.end()) return Usage();
  for (const auto& a : rest) {
    if (!a.empty() && a[0] == '-') return Usage();
  }
  return QueueAction(stub, it->second, rest, json);
}

// --- policy ---

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

int PolicyRpcFailed(const grpc::Status& st) {
  std::fprintf(stderr, "posternctl: %s: %s\n", CodeName(st.error_code()),
               st.error_message().c_str());
  return 1;
}

const char* ChangeVerb(postern::control::v1::ChangeKind kind, bool dry_run) {
  switch (kind) {
    case postern::control::v1::CHANGE_KIND_ADDED:
      return dry_run ? "would add" : "added";
    case postern::control::v1::CHANGE_KIND_MODIFIED:
      return dry_run ? "would change" : "changed";
    case postern::control::v1::CHANGE_KIND_REMOVED:
      return dry_run ? "would remove" : "removed";
    default:
      return "?";
  }
}

const char* RolloutName(admin::RolloutState s) {
  switch (s) {
    case admin::ROLLOUT_STATE_APPLIED:
      return "applied";
    case admin::ROLLOUT_STATE_REFUSED:
      return "refused";
    case admin::ROLLOUT_STATE_PENDING:
      return "pending";
    case admin::ROLLOUT_STATE_NOT_RUNNING:
      return "not running";
    default:
      return "unknown";
  }
}

// Prints a change's outcome. 1 when a worker refused the new configuration
// (the change is committed, but not in force there).
int PrintChange(const admin::PolicyChangeResponse& r, bool json) {
  bool refused = false;
  for (const auto& w : r.rollout().workers()) refused |= w.state() == admin::ROLLOUT_STATE_REFUSED;
  if (json) {
    PrintJson(r);
  } else {
    if (r.dry_run()) {
      std::printf("dry run at revision %lld: nothing committed\n",
                  static_cast<long long>(r.revision()));
    } else if (r.committed()) {
      std::printf("revision %lld\n", static_cast<long long>(r.revision()));
    } else {
      std::printf("no change (revision %lld)\n", static_cast<long long>(r.revision()));
    }
    for (const auto& c : r.changes()) {
      std::printf("  %s partner %s\n", ChangeVerb(c.kind(), r.dry_run()), c.domain().c_str());
    }
    if (r.committed()) {
      int applied = 0;
      for (const auto& w : r.rollout().workers()) {
        applied += w.state() == admin::ROLLOUT_STATE_APPLIED;
      }
      std::printf("config v%llu: %d/%d workers applied\n",
                  static_cast<unsigned long long>(r.rollout().config_version()), applied,
                  r.rollout().workers_size());
      for (const auto& w : r.rollout().workers()) {
        if (w.state() == admin::ROLLOUT_STATE_APPLIED) continue;
        std::printf("  worker %u: %s%s%s\n", w.shard(), RolloutName(w.state()),
                    w.error().empty() ? "" : ": ", w.error().c_str());
      }
    }
  }
  if (refused) {
    std::fprintf(stderr, "posternctl: committed, but a worker refused the new configuration\n");
    return 1;
  }
  return 0;
}

bool ParseRevision(const std::map<std::string, std::string>& opt, int64_t* revision) {
  auto it = opt.find("expect-revision");
  if (it == opt.end()) return true;
  if (!absl::SimpleAtoi(it->second, revision) || *revision <= 0) {
    std::fprintf(stderr, "posternctl: --expect-revision must be a positive number\n");
    return false;
  }
  return true;
}

void SetPolicyDeadline(grpc::ClientContext* ctx) {
  // The node waits up to 5 s for its workers after a change.
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
}

int Apply(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  std::vector<std::string> rest;
  std::string file;
  bool dry_run = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-f" && i + 1 < args.size()) {
      file = args[++i];
    } else if (args[i] == "--dry-run") {
      dry_run = true;
    } else {
      rest.push_back(args[i]);
    }
  }
  std::map<std::string, std::string> opt;
  std::vector<std::string> positional;
  if (file.empty() || !ParseOptions(rest, {"expect-revision"}, &opt, &positional) ||
      !positional.empty()) {
    return Usage();
  }
  int64_t expect = 0;
  if (!ParseRevision(opt, &expect)) return 2;
  std::string text;
  if (file == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "posternctl: cannot read %s\n", file.c_str());
      return 2;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  admin::ApplyPolicyRequest request;
  request.set_yaml(text);
  request.set_dry_run(dry_run);
  request.set_expect_revision(expect);
  grpc::ClientContext ctx;
  SetPolicyDeadline(&ctx);
  admin::PolicyChangeResponse reply;
  grpc::Status st = stub->ApplyPolicy(&ctx, request, &reply);
  if (!st.ok()) return PolicyRpcFailed(st);
  return PrintChange(reply, json);
}

std::string Describe(const postern::config::v1::Partner& p) {
  std::vector<std::string> parts;
  if (p.has_inbound()) {
    parts.push_back(p.inbound().require_tls() ? "inbound: require_tls" : "inbound: tls optional");
    if (p.inbound().pins_size() > 0)
      parts.push_back(absl::StrCat(p.inbound().pins_size(), " pins"));
  }
  if (p.has_outbound() &&
      p.outbound().tls() != postern::config::v1::OUTBOUND_TLS_MODE_UNSPECIFIED) {
    std::string mode = postern::config::v1::OutboundTlsMode_Name(p.outbound().tls());
    const std::string prefix = "OUTBOUND_TLS_MODE_";
    if (mode.rfind(prefix, 0) == 0) mode = mode.substr(prefix.size());
    parts.push_back("outbound: " + absl::AsciiStrToLower(mode));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

int PolicyShow(admin::Policy::Stub* stub, bool json, bool partners_only) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  admin::GetPolicyResponse reply;
  grpc::Status st = stub->GetPolicy(&ctx, admin::GetPolicyRequest(), &reply);
  if (!st.ok()) return PolicyRpcFailed(st);
  if (json) {
    PrintJson(reply);
    return 0;
  }
  if (!partners_only) {
    std::printf("revision %lld  config file %s\n", static_cast<long long>(reply.revision()),
                reply.config_file().c_str());
  }
  std::printf("%-32s %-6s %8s  %s\n", "PARTNER", "SOURCE", "REVISION", "POLICY");
  for (const auto& p : reply.partners()) {
    const bool file = p.source() == admin::POLICY_SOURCE_FILE;
    std::printf("%-32s %-6s %8s  %s%s\n", p.partner().domain().c_str(), file ? "file" : "store",
                file ? "-" : absl::StrCat(p.mod_revision()).c_str(), Describe(p.partner()).c_str(),
                p.shadowed() ? "  (shadowed by the file)" : "");
  }
  return 0;
}

int PolicyHistory(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  std::map<std::string, std::string> opt;
  std::vector<std::string> positional;
  if (!ParseOptions(args, {"limit"}, &opt, &positional) || !positional.empty()) return Usage();
  admin::PolicyHistoryRequest request;
  if (auto it = opt.find("limit"); it != opt.end()) {
    uint32_t limit = 0;
    if (!absl::SimpleAtoi(it->second, &limit) || limit == 0) {
      std::fprintf(stderr, "posternctl: --limit must be a positive number\n");
      return 2;
    }
    request.set_limit(limit);
  }
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  admin::PolicyHistoryResponse reply;
  grpc::Status st = stub->PolicyHistory(&ctx, request, &reply);
  if (!st.ok()) return PolicyRpcFailed(st);
  if (json) {
    PrintJson(reply);
    return 0;
  }
  std::printf("%-8s %-23s %-10s %s\n", "REVISION", "TIME", "ACTOR", "SUMMARY");
  for (const auto& r : reply.records()) {
    std::printf("%-8lld %-23s %-10s %s\n", static_cast<long long>(r.revision()),
                FormatTimestamp(r.time()).c_str(), r.actor().c_str(), r.summary().c_str());
    for (const auto& c : r.changes()) {
      const char* kind = c.kind() == postern::control::v1::CHANGE_KIND_ADDED      ? "+"
                         : c.kind() == postern::control::v1::CHANGE_KIND_MODIFIED ? "~"
                                                                                  : "-";
      std::printf("         %s %s\n", kind, c.key().c_str());
    }
  }
  return 0;
}

int PolicyRollback(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  std::map<std::string, std::string> opt;
  std::vector<std::string> positional;
  if (!ParseOptions(args, {"expect-revision"}, &opt, &positional) || positional.size() != 1) {
    return Usage();
  }
  admin::RollbackPolicyRequest request;
  int64_t revision = 0;
  if (!absl::SimpleAtoi(positional[0], &revision) || revision < 0) {
    std::fprintf(stderr, "posternctl: not a revision: %s\n", positional[0].c_str());
    return 2;
  }
  int64_t expect = 0;
  if (!ParseRevision(opt, &expect)) return 2;
  request.set_revision(revision);
  request.set_expect_revision(expect);
  grpc::ClientContext ctx;
  SetPolicyDeadline(&ctx);
  admin::PolicyChangeResponse reply;
  grpc::Status st = stub->RollbackPolicy(&ctx, request, &reply);
  if (!st.ok()) return PolicyRpcFailed(st);
  return PrintChange(reply, json);
}

int PartnerDelete(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  std::map<std::string, std::string> opt;
  std::vector<std::string> positional;
  if (!ParseOptions(args, {"expect-revision"}, &opt, &positional) || positional.size() != 1) {
    return Usage();
  }
  int64_t expect = 0;
  if (!ParseRevision(opt, &expect)) return 2;
  admin::DeletePartnerRequest request;
  request.set_domain(positional[0]);
  request.set_expect_revision(expect);
  grpc::ClientContext ctx;
  SetPolicyDeadline(&ctx);
  admin::PolicyChangeResponse reply;
  grpc::Status st = stub->DeletePartner(&ctx, request, &reply);
  if (!st.ok()) return PolicyRpcFailed(st);
  return PrintChange(reply, json);
}

int Policy(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  if (args.empty()) return Usage();
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "show" && rest.empty()) return PolicyShow(stub, json, false);
  if (args[0] == "history") return PolicyHistory(stub, rest, json);
  if (args[0] == "rollback") return PolicyRollback(stub, rest, json);
  return Usage();
}

int Partner(admin::Policy::Stub* stub, const std::vector<std::string>& args, bool json) {
  if (args.empty()) return Usage();
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "list" && rest.empty()) return PolicyShow(stub, json, true);
  if (args[0] == "delete") return PartnerDelete(stub, rest, json);
  return Usage();
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "unix:./var/postern/admin.sock";
  bool json = false;
  // --server and --json go anywhere; everything else belongs to the command.
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--server" && i + 1 < argc) {
      server = argv[++i];
    } else if (a.substr(0, 9) == "--server=") {
      server = std::string(a.substr(9));
    } else if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      args.emplace_back(a);
    }
  }
  if (args.empty()) return Usage();
  if (server.find(':') == std::string::npos) server = "unix:" + server;
  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = admin::Admin::NewStub(channel);
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "status" && rest.empty()) return Status(stub.get(), json);
  if (args[0] == "queue") return Queue(stub.get(), rest, json);
  auto policy = admin::Policy::NewStub(channel);
  if (args[0] == "apply") return Apply(policy.get(), rest, json);
  if (args[0] == "policy") return Policy(policy.get(), rest, json);
  if (args[0] == "partner") return Partner(policy.get(), rest, json);
  return Usage();
}
