// A stand-in for postern-worker in supervisor_queue_test: speaks the
// worker side of worker_ipc.proto on fd 3 and answers queue requests from a
// script keyed on the request, so the test can check routing, restarts and
// timeouts without a spool.
//
// - list: one message "<shard>:<adopted shards, comma separated>", shard set;
// - show "SLOW": never answered; show "DIE": the process exits unanswered;
//   any other show: an envelope with that id and this worker's shard;
// - drain: answers Drained and exits.
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ipc_framing.h"
#include "proto/worker_ipc.pb.h"

namespace {

namespace ipc = postern::ipc;

void Send(const ipc::v1::WorkerToSupervisor& msg) {
  if (!ipc::WriteFrame(3, msg.SerializeAsString()).ok()) _exit(1);
}

}  // namespace

int main() {
  uint32_t shard = 0;
  std::string adopted;
  while (true) {
    auto frame = ipc::ReadFrame(3);
    if (!frame.ok()) return 0;
    ipc::v1::SupervisorToWorker msg;
    if (!msg.ParseFromString(*frame)) return 1;
    ipc::v1::WorkerToSupervisor out;
    if (msg.has_setup()) {
      shard = msg.setup().shard();
      adopted = absl::StrJoin(msg.setup().adopted_shards(), ",");
      out.mutable_ready()->set_shard(shard);
      out.mutable_ready()->set_pid(static_cast<uint32_t>(getpid()));
      Send(out);
    } else if (msg.has_drain()) {
      out.mutable_drained();
      Send(out);
      return 0;
    } else if (msg.has_queue_request()) {
      const auto& req = msg.queue_request().request();
      auto* reply = out.mutable_queue_reply();
      reply->set_request_id(msg.queue_request().request_id());
      if (req.has_list()) {
        auto* m = reply->mutable_reply()->mutable_list()->add_messages();
        m->set_queue_id(absl::StrCat(shard, ":", adopted));
        m->set_shard(shard);
      } else if (req.has_show()) {
        if (req.show().queue_id() == "SLOW") continue;
        if (req.show().queue_id() == "DIE") _exit(3);
        auto* env = reply->mutable_reply()->mutable_show()->mutable_envelope();
        env->set_queue_id(req.show().queue_id());
        env->set_shard(shard);
      }
      Send(out);
    }
  }
}
