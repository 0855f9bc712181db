#include "queue/queue_manager.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "queue/fault_injection_fs.h"
#include "queue/queue_id.h"
#include "rocksdb/env.h"

namespace postern::queue {
namespace {

// Records every job; the test answers them when it likes.
class ScriptedTransport : public DeliveryTransport {
 public:
  struct Pending {
    DeliveryJob job;
    Done done;
  };
  void Deliver(DeliveryJob job, Done done) override {
    jobs.push_back({std::move(job), std::move(done)});
  }
  // Answers every pending job of `domain` with `result` for each recipient.
  int Answer(const std::string& domain, const AttemptResult& result) {
    int answered = 0;
    for (auto it = jobs.begin(); it != jobs.end();) {
      if (it->job.domain == domain) {
        std::vector<AttemptResult> results(it->job.recipients.size(), result);
        Done done = std::move(it->done);
        it = jobs.erase(it);
        done(std::move(results));
        ++answered;
      } else {
        ++it;
      }
    }
    return answered;
  }
  std::deque<Pending> jobs;
};

class NoObserver : public QueueObserver {
 public:
  void DsnQueued(const v1::Envelope& dsn, const std::string&) override { ++dsns; }
  int dsns = 0;
};

AttemptResult Delivered() {
  AttemptResult r;
  r.kind = AttemptResult::kDelivered;
  r.status = "2.0.0";
  r.diagnostic = "250 2.0.0 Ok";
  r.remote_mta = "mx.a.example[127.0.0.2]";
  return r;
}

AttemptResult TlsMissing() {
  AttemptResult r;
  r.kind = AttemptResult::kTemporary;
  r.reason = v1::DEFER_REASON_TLS_REQUIRED;
  r.status = "4.7.5";
  r.tls_result = "starttls-not-supported";
  r.diagnostic = "TLS required: starttls-not-supported";
  r.remote_mta = "mx.b.example[127.0.0.3]";
  return r;
}

class QueueManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("qm-", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    fs_ = std::make_shared<FaultInjectionFileSystem>();
    env_ = rocksdb::NewCompositeEnv(fs_);
    SpoolOptions spool_options;
    spool_options.env = env_.get();
    spool_options.min_reopen_interval = absl::Milliseconds(20);
    auto store = SpoolStore::Open(dir_.string(), spool_options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    writer_ = std::make_unique<SpoolWriter>(store_.get());
    ids_ = std::make_unique<QueueIdGenerator>(3);
    MakeManager();
  }
  void TearDown() override {
    manager_.reset();
    writer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void MakeManager() {
    QueueManagerOptions options;
    options.hostname = "relay.test";
    options.scheduler.horizon_ms = 60 * 60 * 1000;
    RetrySchedule schedule({absl::Minutes(10), absl::Hours(1)}, /*jitter=*/0.0);
    manager_ = std::make_unique<QueueManager>(
        store_.get(), writer_.get(), &transport_, schedule, options, [this] { return now_; },
        [this] { return ids_->Next(); }, &observer_);
    ASSERT_TRUE(manager_->Recover().ok());
  }

  // Spools a message like the worker does, due at once.
  // `edit` may change the envelope before it is written.
  std::string Spool(const std::string& sender, const std::vector<std::string>& recipients,
                    const std::function<void(v1::Envelope*)>& edit = {}) {
    SpoolRecord record;
    record.envelope.set_queue_id(ids_->Next());
    record.envelope.set_sender(sender);
    for (const auto& r : recipients) {
      auto* rcpt = record.envelope.add_recipients();
      rcpt->set_address(r);
      rcpt->set_state(v1::RECIPIENT_STATE_PENDING);
    }
    record.envelope.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(now_));
    *record.envelope.mutable_schedule()->mutable_next_attempt() = record.envelope.arrival_time();
    record.body = "Subject: hello\r\nMessage-ID: <m1@client.test>\r\n\r\nbody\r\n";
    record.envelope.set_body_size(record.body.size());
    if (edit) edit(&record.envelope);
    const std::string id = record.envelope.queue_id();
    writer_->Submit(1, std::move(record));
    // Until its own completion came back: a slow fsync (a loaded machine,
    // the sanitizers) can take longer than one Pump() waits.
    for (int i = 0; i < 100 && spooled_.empty(); ++i) Pump();
    // The worker hands over what the writer gives back with the completion.
    for (SpoolCompletion& c : spooled_) {
      EXPECT_EQ(c.record.envelope.queue_id(), id);
      manager_->OnSpooled(std::move(c.record));
    }
    spooled_.clear();
    return id;
  }

  // Waits for the writer's completions and hands the manager's to it.
  void Pump(bool expect_ok = true) {
    for (int rounds = 0; rounds < 50; ++rounds) {
      pollfd p{writer_->completion_eventfd(), POLLIN, 0};
      // While the manager still waits for one of its writes, wait for it
      // (a slow fsync on a loaded machine or under the sanitizers); else a
      // short wait for anything else in flight.
      const bool waiting = manager_ != nullptr && manager_->writes_in_flight() > 0;
      if (poll(&p, 1, waiting ? 5000 : 100) <= 0) return;
      uint64_t value;
      (void)!read(writer_->completion_eventfd(), &value, sizeof(value));
      for (SpoolCompletion& c : writer_->TakeCompletions()) {
        if (expect_ok) {
          ASSERT_TRUE(c.status.ok()) << c.status;
        }
        if (c.client == manager_.get()) {
          manager_->OnWriteDone(c);
        } else {
          spooled_.push_back(std::move(c));
        }
      }
    }
  }

  // One scheduler round: tick (scan behind a barrier), pump, tick again.
  void Run(bool expect_ok = true) {
    manager_->Tick();
    Pump(expect_ok);
    manager_->Tick();
    Pump(expect_ok);
  }

  std::vector<v1::Envelope> All() {
    std::vector<v1::Envelope> out;
    EXPECT_TRUE(store_
                    ->ForEachEnvelope([&](const v1::Envelope& e) {
                      out.push_back(e);
                      return absl::OkStatus();
                    })
                    .ok());
    return out;
  }

  v1::QueueReply Ask(const v1::QueueRequest& request) {
    v1::QueueReply got;
    bool answered = false;
    manager_->HandleRequest(request, [&](v1::QueueReply r) {
      got = std::move(r);
      answered = true;
    });
    Pump();
    EXPECT_TRUE(answered);
    return got;
  }

  std::filesystem::path dir_;
  std::shared_ptr<FaultInjectionFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<SpoolStore> store_;
  std::unique_ptr<SpoolWriter> writer_;
  std::unique_ptr<QueueIdGenerator> ids_;
  ScriptedTransport transport_;
  NoObserver observer_;
  std::unique_ptr<QueueManager> manager_;
  std::vector<SpoolCompletion> spooled_;  // completions of Spool()'s writes
  absl::Time now_ = absl::FromUnixSeconds(1795000000);
};

TEST_F(QueueManagerTest, EachDestinationIsAJobAndDeliveredMailLeavesTheQueue) {
  const std::string id = Spool("alice@client.test", {"bob@a.example", "carol@A.example"});
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u) << "one job per destination domain";
  EXPECT_EQ(transport_.jobs[0].job.domain, "a.example");
  EXPECT_EQ(transport_.jobs[0].job.recipients, (std::vector<int>{0, 1}));
  EXPECT_EQ(*transport_.jobs[0].job.body,
            "Subject: hello\r\nMessage-ID: <m1@client.test>\r\n\r\nbody\r\n");
  EXPECT_EQ(manager_->active(), 1u);
  transport_.Answer("a.example", Delivered());
  Pump();
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(id).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->ReadBody(id).status()));
  EXPECT_TRUE(store_->ScanSchedule(0, INT64_MAX, 10)->empty()) << "index key removed too";
  EXPECT_EQ(manager_->depth(), 0u);
  EXPECT_EQ(observer_.dsns, 0);
}

TEST_F(QueueManagerTest, EnforcedTlsFailureIsRetriedThen24HoursLaterBouncedWithADsn) {
  const std::string id = Spool("alice@client.test", {"bob@a.example", "dave@b.example"});
  const absl::Time arrival = now_;
  Run();
  ASSERT_EQ(transport_.jobs.size(), 2u) << "mixed recipients: one job per destination";
  transport_.Answer("a.example", Delivered());
  transport_.Answer("b.example", TlsMissing());
  Pump();
  auto env = store_->ReadEnvelope(id);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->recipients(0).state(), v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_EQ(env->recipients(1).state(), v1::RECIPIENT_STATE_DEFERRED);
  EXPECT_EQ(env->recipients(1).tls_result(), "starttls-not-supported");
  EXPECT_EQ(env->schedule().attempts(), 1u);
  EXPECT_EQ(manager_->deferred(), 1u);
  auto index = store_->ScanSchedule(0, INT64_MAX, 10);
  ASSERT_EQ(index->size(), 1u);
  EXPECT_EQ(index->front().due_ms, absl::ToUnixMillis(now_ + absl::Minutes(10)));

  // Not due before the first retry step.
  now_ += absl::Minutes(9);
  Run();
  EXPECT_TRUE(transport_.jobs.empty());

  // Retried only for the recipient still open, every step, for 24 hours.
  int attempts = 1;
  while (true) {
    now_ += absl::Hours(1);
    Run();
    if (transport_.jobs.empty()) break;
    ASSERT_EQ(transport_.jobs.size(), 1u);
    EXPECT_EQ(transport_.jobs[0].job.domain, "b.example");
    EXPECT_EQ(transport_.jobs[0].job.recipients, std::vector<int>{1});
    transport_.Answer("b.example", TlsMissing());
    Pump();
    ++attempts;
    if (absl::IsNotFound(store_->ReadEnvelope(id).status())) break;
    ASSERT_LT(now_ - arrival, absl::Hours(25)) << "never bounced";
  }
  EXPECT_GE(now_ - arrival, absl::Hours(24));
  EXPECT_GE(attempts, 24);
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(id).status()));

  // The failure notice went into the queue in the same batch.
  std::vector<v1::Envelope> left = All();
  ASSERT_EQ(left.size(), 1u);
  const v1::Envelope& dsn = left[0];
  EXPECT_TRUE(dsn.is_dsn());
  EXPECT_EQ(dsn.sender(), "");
  ASSERT_EQ(dsn.recipients_size(), 1);
  EXPECT_EQ(dsn.recipients(0).address(), "alice@client.test");
  auto body = store_->ReadBody(dsn.queue_id());
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find("Status: 5.7.10"), std::string::npos) << *body;
  EXPECT_NE(body->find("starttls-not-supported"), std::string::npos);
  EXPECT_NE(body->find("Final-Recipient: rfc822; dave@b.example"), std::string::npos);
  EXPECT_EQ(body->find("bob@a.example"), std::string::npos) << "delivered recipient not reported";
  EXPECT_EQ(observer_.dsns, 1);
  EXPECT_EQ(manager_->depth(), 1u);

  // The notice is due at once and goes out like any message; a failure of
  // the notice itself makes no further notice.
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  EXPECT_EQ(transport_.jobs[0].job.domain, "client.test");
  AttemptResult refused;
  refused.kind = AttemptResult::kPermanent;
  refused.status = "5.1.1";
  refused.diagnostic = "550 5.1.1 unknown user";
  transport_.Answer("client.test", refused);
  Pump();
  EXPECT_TRUE(All().empty());
  EXPECT_EQ(observer_.dsns, 1);
}

TEST_F(QueueManagerTest, DelayWarningIsSentOnceAfterTheConfiguredWait) {
  RetrySchedule schedule({absl::Minutes(10)}, /*jitter=*/0.0);
  schedule.set_delay_warning(absl::Minutes(30));
  manager_->set_schedule(schedule);
  AttemptResult busy;
  busy.kind = AttemptResult::kTemporary;
  busy.reason = v1::DEFER_REASON_TEMPORARY_REPLY;
  busy.status = "4.2.1";
  busy.diagnostic = "451 4.2.1 mailbox busy";
  const std::string id = Spool("alice@client.test", {"bob@a.example"});
  for (int i = 0; i < 6; ++i) {  // attempts at 0, 10, 20, ... 50 minutes
    Run();
    ASSERT_EQ(transport_.Answer("a.example", busy), 1) << "attempt " << i;
    Pump();
    EXPECT_EQ(observer_.dsns, i < 3 ? 0 : 1) << "one warning, at the first attempt after 30m";
    now_ += absl::Minutes(10);
  }
  auto env = store_->ReadEnvelope(id);
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(env->recipients(0).delay_notified());
  EXPECT_EQ(env->recipients(0).state(), v1::RECIPIENT_STATE_DEFERRED);
  bool found = false;
  for (const v1::Envelope& e : All()) {
    if (!e.is_dsn()) continue;
    found = true;
    auto body = store_->ReadBody(e.queue_id());
    ASSERT_TRUE(body.ok());
    EXPECT_NE(body->find("Action: delayed"), std::string::npos) << *body;
  }
  EXPECT_TRUE(found);
}

TEST_F(QueueManagerTest, NotifySuccessToAServerWithoutDsnGetsARelayedNotice) {
  Spool("alice@client.test", {"bob@a.example", "carol@a.example"},
        [](v1::Envelope* e) { e->mutable_recipients(0)->set_notify("SUCCESS,FAILURE"); });
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  AttemptResult relayed = Delivered();
  relayed.relayed_without_dsn = true;
  std::vector<AttemptResult> results = {relayed, Delivered()};
  auto done = std::move(transport_.jobs[0].done);
  transport_.jobs.clear();
  done(results);
  Pump();
  ASSERT_EQ(observer_.dsns, 1);
  std::vector<v1::Envelope> left = All();
  ASSERT_EQ(left.size(), 1u);
  auto body = store_->ReadBody(left[0].queue_id());
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->find("Action: relayed"), std::string::npos) << *body;
  EXPECT_NE(body->find("bob@a.example"), std::string::npos);
  EXPECT_EQ(body->find("Final-Recipient: rfc822; carol@a.example"), std::string::npos)
      << "carol asked for nothing";
}

TEST_F(QueueManagerTest, AFailedResultWriteIsWrittenAgainNotDeliveredAgain) {
  const std::string id = Spool("alice@client.test", {"bob@a.example"});
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  fs_->SetAppendFault(FaultInjectionFileSystem::Fault::kNoSpace);  // disk full
  transport_.Answer("a.example", Delivered());
  Pump(/*expect_ok=*/false);
  EXPECT_TRUE(store_->ReadEnvelope(id).ok()) << "not removed: the write failed";
  EXPECT_EQ(manager_->active(), 1u) << "still in delivery, waiting to be written";
  // Minutes of a full disk: retried writes, no second delivery.
  for (int i = 0; i < 5; ++i) {
    now_ += absl::Seconds(2);
    Run(/*expect_ok=*/false);
    EXPECT_TRUE(transport_.jobs.empty()) << "delivered again at round " << i;
  }
  fs_->SetAppendFault(FaultInjectionFileSystem::Fault::kNone);  // space returns
  for (int i = 0; i < 10 && store_->ReadEnvelope(id).ok(); ++i) {
    now_ += absl::Seconds(2);  // the store reopens at most every 20 ms (real time)
    Run(/*expect_ok=*/false);
  }
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(id).status()));
  EXPECT_EQ(manager_->active(), 0u);
  EXPECT_TRUE(transport_.jobs.empty());
}

TEST_F(QueueManagerTest, RecoveryRebuildsFromTheIndex) {
  const std::string id = Spool("alice@client.test", {"bob@a.example"});
  Run();
  transport_.Answer("a.example", TlsMissing());
  Pump();
  // A new manager (worker restart) finds the deferred message again.
  manager_ = nullptr;
  MakeManager();
  EXPECT_EQ(manager_->depth(), 1u);
  EXPECT_EQ(manager_->deferred(), 1u);
  Run();
  EXPECT_TRUE(transport_.jobs.empty()) << "not due yet";
  now_ += absl::Minutes(11);
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  EXPECT_EQ(transport_.jobs[0].job.queue_id, id);
}

TEST_F(QueueManagerTest, AdminListShowHoldReleaseDeleteBounce) {
  manager_->set_hold(true);  // nothing is attempted: the queue stays put
  const std::string a = Spool("alice@client.test", {"bob@a.example"});
  const std::string b = Spool("eve@client.test", {"x@b.example"});
  const std::string c = Spool("", {"y@b.example"});  // null sender: never a DSN

  v1::QueueRequest list;
  list.mutable_list();
  v1::QueueReply reply = Ask(list);
  ASSERT_EQ(reply.list().messages_size(), 3);
  EXPECT_EQ(reply.list().messages(0).queue_id(), a);
  EXPECT_EQ(reply.list().messages(0).sender(), "alice@client.test");

  v1::QueueRequest show;
  show.mutable_show()->set_queue_id(b);
  reply = Ask(show);
  EXPECT_EQ(reply.show().envelope().sender(), "eve@client.test");
  show.mutable_show()->set_queue_id("00000000000000FF");
  EXPECT_EQ(Ask(show).error(), "not found");

  v1::QueueRequest hold;
  hold.mutable_action()->set_action(v1::QUEUE_ACTION_HOLD);
  hold.mutable_action()->add_queue_ids(a);
  reply = Ask(hold);
  ASSERT_EQ(reply.action().results_size(), 1);
  EXPECT_TRUE(reply.action().results(0).ok()) << reply.action().results(0).error();
  EXPECT_TRUE(store_->ReadEnvelope(a)->schedule().held());
  EXPECT_EQ(manager_->held(), 1u);
  list.mutable_list()->mutable_filter()->set_state(v1::MESSAGE_STATE_HELD);
  reply = Ask(list);
  ASSERT_EQ(reply.list().messages_size(), 1);
  EXPECT_EQ(reply.list().messages(0).queue_id(), a);

  // Held mail is not attempted even with delivery running.
  manager_->set_hold(false);
  Run();
  for (const auto& p : transport_.jobs) EXPECT_NE(p.job.queue_id, a);
  transport_.Answer("b.example", TlsMissing());
  Pump();

  v1::QueueRequest release;
  release.mutable_action()->set_action(v1::QUEUE_ACTION_RELEASE);
  release.mutable_action()->add_queue_ids(a);
  EXPECT_TRUE(Ask(release).action().results(0).ok());
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  EXPECT_EQ(transport_.jobs[0].job.queue_id, a);
  EXPECT_EQ(Ask(hold).action().results(0).error(), "in delivery, try again");
  transport_.Answer("a.example", TlsMissing());
  Pump();

  v1::QueueRequest del;
  del.mutable_action()->set_action(v1::QUEUE_ACTION_DELETE);
  del.mutable_action()->add_queue_ids(a);
  EXPECT_TRUE(Ask(del).action().results(0).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->ReadEnvelope(a).status()));
  EXPECT_EQ(observer_.dsns, 0) << "delete sends no notice";

  v1::QueueRequest bounce;
  bounce.mutable_action()->set_action(v1::QUEUE_ACTION_BOUNCE);
  bounce.mutable_action()->add_queue_ids(b);
  bounce.mutable_action()->add_queue_ids(c);
  reply = Ask(bounce);
  EXPECT_TRUE(reply.action().results(0).ok());
  EXPECT_TRUE(reply.action().results(1).ok());
  EXPECT_EQ(observer_.dsns, 1) << "one notice, to eve; none for the null sender";
  std::vector<v1::Envelope> left = All();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_TRUE(left[0].is_dsn());
  EXPECT_EQ(left[0].recipients(0).address(), "eve@client.test");
  EXPECT_EQ(manager_->depth(), 1u);
}

// Fresh mail: the first attempt uses what the writer handed back instead of
// reading the spool. The spool's copy is made to differ here so the test can
// tell which one was delivered.
TEST_F(QueueManagerTest, FreshMailIsDeliveredFromMemoryWithoutReadingTheSpool) {
  SpoolRecord record;
  record.envelope.set_queue_id(ids_->Next());
  record.envelope.set_sender("alice@client.test");
  auto* rcpt = record.envelope.add_recipients();
  rcpt->set_address("bob@a.example");
  rcpt->set_state(v1::RECIPIENT_STATE_PENDING);
  record.envelope.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(now_));
  *record.envelope.mutable_schedule()->mutable_next_attempt() = record.envelope.arrival_time();
  record.body = "Subject: on disk\r\n\r\nbody\r\n";
  record.envelope.set_body_size(record.body.size());
  SpoolRecord in_memory = record;
  in_memory.body = "Subject: in memory\r\n\r\nbody\r\n";
  writer_->Submit(1, std::move(record));
  Pump();
  manager_->OnSpooled(std::move(in_memory));
  EXPECT_EQ(manager_->fresh_messages(), 1u);
  EXPECT_GT(manager_->fresh_bytes(), 30u);

  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u);
  EXPECT_EQ(*transport_.jobs[0].job.body, "Subject: in memory\r\n\r\nbody\r\n");
  EXPECT_EQ(manager_->fresh_messages(), 0u);
  EXPECT_EQ(manager_->fresh_bytes(), 0u);
  transport_.Answer("a.example", Delivered());
  Pump();
  EXPECT_EQ(manager_->depth(), 0u);
}

TEST_F(QueueManagerTest, FreshCopyIsDroppedWhenAnAdminActionRewritesTheMessage) {
  const std::string id = Spool("alice@client.test", {"bob@a.example"});
  ASSERT_EQ(manager_->fresh_messages(), 1u);
  v1::QueueRequest hold;
  hold.mutable_action()->set_action(v1::QUEUE_ACTION_HOLD);
  hold.mutable_action()->add_queue_ids(id);
  ASSERT_TRUE(Ask(hold).action().results(0).ok());
  EXPECT_EQ(manager_->fresh_messages(), 0u);
  Run();
  EXPECT_TRUE(transport_.jobs.empty()) << "held: not attempted";

  v1::QueueRequest release;
  release.mutable_action()->set_action(v1::QUEUE_ACTION_RELEASE);
  release.mutable_action()->add_queue_ids(id);
  ASSERT_TRUE(Ask(release).action().results(0).ok());
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u) << "released: read back from the spool";
  EXPECT_EQ(*transport_.jobs[0].job.body,
            "Subject: hello\r\nMessage-ID: <m1@client.test>\r\n\r\nbody\r\n");
}

TEST_F(QueueManagerTest, FreshMemoryIsBoundedInBytesAndAge) {
  manager_.reset();
  QueueManagerOptions options;
  options.hostname = "relay.test";
  options.scheduler.horizon_ms = 60 * 60 * 1000;
  options.fresh_max_bytes = 1000;  // room for a few small messages
  options.fresh_max_age_ms = 5000;
  options.max_active = 0;  // nothing starts, so nothing is taken
  manager_ = std::make_unique<QueueManager>(
      store_.get(), writer_.get(), &transport_, RetrySchedule({absl::Minutes(10)}, 0.0), options,
      [this] { return now_; }, [this] { return ids_->Next(); }, &observer_);
  ASSERT_TRUE(manager_->Recover().ok());
  for (int i = 0; i < 20; ++i) Spool("alice@client.test", {"bob@a.example"});
  EXPECT_GT(manager_->fresh_messages(), 0u);
  EXPECT_LT(manager_->fresh_messages(), 20u) << "past the byte bound the spool is read instead";
  EXPECT_LE(manager_->fresh_bytes(), 1000u);
  EXPECT_EQ(manager_->depth(), 20u);

  now_ += absl::Seconds(6);
  manager_->Tick();
  EXPECT_EQ(manager_->fresh_messages(), 0u) << "older than fresh_max_age_ms";
  EXPECT_EQ(manager_->fresh_bytes(), 0u);
}

TEST_F(QueueManagerTest, NothingIsKeptInMemoryWhileDeliveryIsHeld) {
  manager_->set_hold(true);
  Spool("alice@client.test", {"bob@a.example"});
  EXPECT_EQ(manager_->fresh_messages(), 0u);
  manager_->set_hold(false);
  Run();
  ASSERT_EQ(transport_.jobs.size(), 1u) << "released: read from the spool";
}

}  // namespace
}  // namespace postern::queue
