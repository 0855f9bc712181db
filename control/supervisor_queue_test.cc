// Queue requests through a real Supervisor and real worker processes
// (control/fake_queue_worker.cc): routing by worker, replies matched by
// request id, adoption of spool directories, timeouts, and the requests a
// dying worker takes with it.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/time/clock.h"
#include "control/supervisor.h"

namespace postern::control {
namespace {

namespace qv1 = queue::v1;

QueueForwarder::Call Show(uint32_t worker, const std::string& id) {
  QueueForwarder::Call c;
  c.worker = worker;
  c.request.mutable_show()->set_queue_id(id);
  return c;
}

QueueForwarder::Call List(uint32_t worker) {
  QueueForwarder::Call c;
  c.worker = worker;
  c.request.mutable_list();
  return c;
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

TEST(AdoptedShards, DirectoriesWithoutAWorkerGoToShardModN) {
  auto dir = std::filesystem::path(testing::TempDir()) / "adopt";
  std::filesystem::remove_all(dir);
  for (const char* name : {"0", "1", "2", "3", "5", "256", "x7", "07a"}) {
    std::filesystem::create_directories(dir / "spool" / name);
  }
  EXPECT_EQ(Supervisor::AdoptedShards(dir.string(), 2, 0), (std::vector<uint32_t>{2}));
  EXPECT_EQ(Supervisor::AdoptedShards(dir.string(), 2, 1), (std::vector<uint32_t>{3, 5}));
  EXPECT_EQ(Supervisor::AdoptedShards(dir.string(), 8, 0), (std::vector<uint32_t>{}));
  EXPECT_EQ(Supervisor::AdoptedShards((dir / "missing").string(), 2, 0), (std::vector<uint32_t>{}));
}

class SupervisorQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Every thread must block the supervisor's signals, or a SIGCHLD or the
    // test's SIGTERM could be delivered to a thread that does not read the
    // signalfd.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, s);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);

    data_dir_ = std::filesystem::path(testing::TempDir()) / "supervisor_queue";
    std::filesystem::remove_all(data_dir_);
    std::filesystem::create_directories(data_dir_ / "spool" / "2");  // adopted by worker 0
    config::v1::Config config;
    config.mutable_node()->set_data_dir(data_dir_.string());
    config.mutable_node()->mutable_drain_timeout()->set_seconds(2);
    SupervisorOptions options;
    options.worker_binary = "control/fake_queue_worker";
    options.workers = 2;
    supervisor_ = std::make_unique<Supervisor>(config, options);
    ASSERT_TRUE(supervisor_->Prepare().ok());
    run_ = std::thread([this] { run_status_ = supervisor_->Run(); });
    ASSERT_TRUE(WaitFor([this] { return supervisor_->ready(); })) << "workers never got ready";
  }

  void TearDown() override {
    if (run_.joinable()) {
      kill(getpid(), SIGTERM);
      run_.join();
    }
  }

  std::filesystem::path data_dir_;
  std::unique_ptr<Supervisor> supervisor_;
  std::thread run_;
  absl::Status run_status_;
};

TEST_F(SupervisorQueueTest, RepliesComeBackFromTheWorkerThatWasAsked) {
  EXPECT_EQ(supervisor_->worker_count(), 2u);
  EXPECT_EQ(supervisor_->WorkerForShard(0), 0u);
  EXPECT_EQ(supervisor_->WorkerForShard(3), 1u);
  EXPECT_EQ(supervisor_->WorkerForShard(0xFF), 1u);

  auto replies = supervisor_->Forward({List(1), List(0), Show(1, "ABC")}, absl::Seconds(10));
  ASSERT_EQ(replies.size(), 3u);
  for (const auto& r : replies) ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(replies[0]->list().messages(0).queue_id(), "1:");
  EXPECT_EQ(replies[1]->list().messages(0).queue_id(), "0:2");  // setup named the adopted dir
  EXPECT_EQ(replies[2]->show().envelope().queue_id(), "ABC");
  EXPECT_EQ(replies[2]->show().envelope().shard(), 1u);
}

TEST_F(SupervisorQueueTest, ConcurrentCallersEachGetTheirOwnAnswer) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        auto r = supervisor_->Forward({Show(t % 2, id)}, absl::Seconds(10));
        if (r[0].ok() && r[0]->show().envelope().queue_id() == id &&
            r[0]->show().envelope().shard() == static_cast<uint32_t>(t % 2)) {
          ++good;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 160);
}

TEST_F(SupervisorQueueTest, AnUnansweredRequestTimesOut) {
  const absl::Time start = absl::Now();
  auto replies = supervisor_->Forward({Show(0, "SLOW"), Show(1, "fast")}, absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(absl::IsUnavailable(replies[0].status())) << replies[0].status();
  EXPECT_TRUE(replies[1].ok()) << replies[1].status();
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(3));
  // The worker is still fine.
  EXPECT_TRUE(supervisor_->Forward({List(0)}, absl::Seconds(10))[0].ok());
}

TEST_F(SupervisorQueueTest, AWorkerThatDiesFailsItsRequestsAndItsSuccessorAnswers) {
  const absl::Time start = absl::Now();
  auto replies = supervisor_->Forward({Show(1, "DIE")}, absl::Seconds(10));
  EXPECT_TRUE(absl::IsUnavailable(replies[0].status())) << replies[0].status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "should not wait for the timeout";
  // The restarted worker (after a 100 ms backoff) serves new requests.
  ASSERT_TRUE(WaitFor([this] {
    auto r = supervisor_->Forward({List(1)}, absl::Seconds(1));
    return r[0].ok();
  }));
}

TEST_F(SupervisorQueueTest, NoRequestsOnceStopped) {
  kill(getpid(), SIGTERM);
  run_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  auto replies = supervisor_->Forward({List(0)}, absl::Seconds(10));
  EXPECT_TRUE(absl::IsUnavailable(replies[0].status()));
  auto bad = supervisor_->Forward({List(7)}, absl::Seconds(1));
  EXPECT_TRUE(absl::IsUnavailable(bad[0].status()));
}

}  // namespace
}  // namespace postern::control
