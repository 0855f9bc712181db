#include "control/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace postern::control {
namespace {

namespace qv1 = queue::v1;

std::string Id(int n, uint32_t shard) {
  return absl::StrFormat("%014X%02X", 0x5F3A1B2C3D400 + n, shard);
}

// Workers as maps of queue ids; each call is answered like a worker would,
// or fails for the workers listed in `down`.
class FakeForwarder : public QueueForwarder {
 public:
  explicit FakeForwarder(uint32_t workers) : workers_(workers) {}

  uint32_t worker_count() const override { return workers_; }
  uint32_t WorkerForShard(uint32_t shard) const override { return shard % workers_; }

  std::vector<absl::StatusOr<qv1::QueueReply>> Forward(const std::vector<Call>& calls,
                                                       absl::Duration timeout) override {
    absl::MutexLock lock(&mu);
    last_timeout = timeout;
    std::vector<absl::StatusOr<qv1::QueueReply>> out;
    for (const Call& call : calls) {
      sent.push_back(call);
      if (down.count(call.worker)) {
        out.push_back(absl::UnavailableError("worker exited"));
        continue;
      }
      out.push_back(Answer(call));
    }
    return out;
  }

  qv1::QueueReply Answer(const Call& call) {
    qv1::QueueReply reply;
    const auto& q = queues[call.worker];
    if (call.request.has_list()) {
      const auto& req = call.request.list();
      auto* list = reply.mutable_list();
      for (const auto& [id, sender] : q) {
        if (id <= req.after_queue_id()) continue;
        if (list->messages_size() == static_cast<int>(req.limit() ? req.limit() : 100)) {
          list->set_next_after_queue_id(list->messages(list->messages_size() - 1).queue_id());
          break;
        }
        auto* m = list->add_messages();
        m->set_queue_id(id);
        m->set_sender(sender);
      }
    } else if (call.request.has_show()) {
      auto it = q.find(call.request.show().queue_id());
      if (it == q.end()) {
        reply.set_error("not found");
      } else {
        reply.mutable_show()->mutable_envelope()->set_queue_id(it->first);
        reply.mutable_show()->mutable_envelope()->set_sender(it->second);
      }
    } else if (call.request.has_action()) {
      for (const auto& id : call.request.action().queue_ids()) {
        auto* r = reply.mutable_action()->add_results();
        r->set_queue_id(id);
        if (q.count(id)) {
          r->set_ok(true);
        } else {
          r->set_error("not found");
        }
      }
    }
    return reply;
  }

  uint32_t workers_;
  absl::Mutex mu;
  std::map<uint32_t, std::map<std::string, std::string>> queues;  // worker -> id -> sender
  std::set<uint32_t> down;
  std::vector<Call> sent;
  absl::Duration last_timeout;
};

class AdminServiceTest : public ::testing::Test {
 protected:
  AdminServiceTest() : service_([] { return admin::v1::GetStatusResponse(); }, &fake_) {
    // Shards 0..3 on two workers: 0 and 2 on worker 0, 1 and 3 on worker 1.
    for (int n = 0; n < 12; ++n) {
      uint32_t shard = n % 4;
      fake_.queues[shard % 2][Id(n, shard)] = "sender" + std::to_string(n);
    }
  }

  FakeForwarder fake_{2};
  AdminService service_;
  grpc::ServerContext ctx_;
};

std::vector<std::string> Ids(const qv1::ListReply& r) {
  std::vector<std::string> out;
  for (const auto& m : r.messages()) out.push_back(m.queue_id());
  return out;
}

TEST(ShardOfQueueId, LastTwoHexDigits) {
  EXPECT_EQ(*ShardOfQueueId("0005F3A1B2C3D4A3"), 0xA3u);
  EXPECT_FALSE(ShardOfQueueId("0005f3a1b2c3d4a3").ok());
  EXPECT_FALSE(ShardOfQueueId("123").ok());
  EXPECT_FALSE(ShardOfQueueId("").ok());
}

TEST_F(AdminServiceTest, ListFansOutAndMergesPagesInIdOrder) {
  qv1::ListRequest req;
  req.set_limit(5);
  std::vector<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    qv1::ListReply reply;
    ASSERT_TRUE(service_.ListQueue(&ctx_, &req, &reply).ok());
    EXPECT_LE(reply.messages_size(), 5);
    for (const auto& id : Ids(reply)) seen.push_back(id);
    if (reply.next_after_queue_id().empty()) break;
    req.set_after_queue_id(reply.next_after_queue_id());
  }
  std::vector<std::string> want;
  for (int n = 0; n < 12; ++n) want.push_back(Id(n, n % 4));
  EXPECT_EQ(seen, want);
  // Every page asked both workers.
  EXPECT_EQ(fake_.sent.size() % 2, 0u);
  EXPECT_EQ(fake_.sent[0].worker, 0u);
  EXPECT_EQ(fake_.sent[1].worker, 1u);
  EXPECT_LE(fake_.last_timeout, AdminService::kQueueTimeout);
  EXPECT_GT(fake_.last_timeout, absl::Seconds(5));
}

TEST_F(AdminServiceTest, ListFailsWhenAWorkerCannotAnswer) {
  fake_.down.insert(1);
  qv1::ListRequest req;
  qv1::ListReply reply;
  grpc::Status st = service_.ListQueue(&ctx_, &req, &reply);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(st.error_message(), "worker exited");
}

TEST_F(AdminServiceTest, ListRejectsAMalformedCursor) {
  qv1::ListRequest req;
  req.set_after_queue_id("nonsense");
  qv1::ListReply reply;
  EXPECT_EQ(service_.ListQueue(&ctx_, &req, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(fake_.sent.empty());
}

TEST_F(AdminServiceTest, ShowGoesToTheShardsWorker) {
  qv1::ShowRequest req;
  req.set_queue_id(Id(3, 3));
  qv1::ShowReply reply;
  ASSERT_TRUE(service_.ShowMessage(&ctx_, &req, &reply).ok());
  EXPECT_EQ(reply.envelope().sender(), "sender3");
  ASSERT_EQ(fake_.sent.size(), 1u);
  EXPECT_EQ(fake_.sent[0].worker, 1u);

  req.set_queue_id(Id(99, 2));
  EXPECT_EQ(service_.ShowMessage(&ctx_, &req, &reply).error_code(), grpc::StatusCode::NOT_FOUND);
  req.set_queue_id("xyz");
  EXPECT_EQ(service_.ShowMessage(&ctx_, &req, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  fake_.down.insert(0);
  req.set_queue_id(Id(2, 2));
  EXPECT_EQ(service_.ShowMessage(&ctx_, &req, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AdminServiceTest, ActionSplitsIdsByWorkerAndKeepsRequestOrder) {
  fake_.down.insert(1);
  qv1::ActionRequest req;
  req.set_action(qv1::QUEUE_ACTION_HOLD);
  for (const std::string& id : {Id(1, 1), Id(0, 0), std::string("bogus"), Id(2, 2), Id(50, 0)}) {
    req.add_queue_ids(id);
  }
  qv1::ActionReply reply;
  ASSERT_TRUE(service_.QueueAction(&ctx_, &req, &reply).ok());
  ASSERT_EQ(reply.results_size(), 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(reply.results(i).queue_id(), req.queue_ids(i));
  EXPECT_FALSE(reply.results(0).ok());
  EXPECT_EQ(reply.results(0).error(), "worker exited");  // worker 1 is down
  EXPECT_TRUE(reply.results(1).ok());
  EXPECT_EQ(reply.results(2).error(), "not a queue id");
  EXPECT_TRUE(reply.results(3).ok());
  EXPECT_EQ(reply.results(4).error(), "not found");
  // One request per worker, each with the action.
  ASSERT_EQ(fake_.sent.size(), 2u);
  EXPECT_EQ(fake_.sent[0].worker, 1u);
  EXPECT_EQ(fake_.sent[1].worker, 0u);
  EXPECT_EQ(fake_.sent[1].request.action().action(), qv1::QUEUE_ACTION_HOLD);
  EXPECT_EQ(fake_.sent[1].request.action().queue_ids_size(), 3);
}

TEST_F(AdminServiceTest, ActionNeedsAnActionAndIds) {
  qv1::ActionRequest req;
  req.add_queue_ids(Id(0, 0));
  qv1::ActionReply reply;
  EXPECT_EQ(service_.QueueAction(&ctx_, &req, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  req.set_action(qv1::QUEUE_ACTION_DELETE);
  req.clear_queue_ids();
  EXPECT_EQ(service_.QueueAction(&ctx_, &req, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(AdminServiceWithoutQueue, QueueRpcsAreUnimplemented) {
  AdminService service([] { return admin::v1::GetStatusResponse(); });
  grpc::ServerContext ctx;
  qv1::ListRequest req;
  qv1::ListReply reply;
  EXPECT_EQ(service.ListQueue(&ctx, &req, &reply).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace postern::control
