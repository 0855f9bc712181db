#include "queue/recipient_outcome.h"

#include <random>
#include <string>
#include <vector>

#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern::queue {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The fake clock: plain absl::Time values the test advances.
const absl::Time kArrival = absl::FromUnixSeconds(1'790'000'000);

AttemptResult TlsFailure() {
  AttemptResult a;
  a.kind = AttemptResult::kTemporary;
  a.reason = v1::DEFER_REASON_TLS_REQUIRED;
  a.status = "4.7.5";
  a.diagnostic = "TLS required: starttls-not-supported by mx.example[192.0.2.1]";
  a.tls_result = "starttls-not-supported";
  a.remote_mta = "mx.example[192.0.2.1]";
  return a;
}

AttemptResult ConnectionFailure() {
  AttemptResult a;
  a.kind = AttemptResult::kTemporary;
  a.reason = v1::DEFER_REASON_CONNECTION;
  a.status = "4.4.1";
  a.diagnostic = "connect to mx.example[192.0.2.1]:25: Connection refused";
  a.remote_mta = "mx.example[192.0.2.1]";
  return a;
}

AttemptResult TempReply() {
  AttemptResult a;
  a.kind = AttemptResult::kTemporary;
  a.reason = v1::DEFER_REASON_TEMPORARY_REPLY;
  a.status = "4.2.2";
  a.diagnostic = "452 4.2.2 <bob@example.net>: mailbox full";
  a.remote_mta = "mx.example[192.0.2.1]";
  return a;
}

AttemptResult Permanent() {
  AttemptResult a;
  a.kind = AttemptResult::kPermanent;
  a.status = "5.1.1";
  a.diagnostic = "550 5.1.1 <bob@example.net>: unknown user";
  a.remote_mta = "mx.example[192.0.2.1]";
  return a;
}

AttemptResult Delivered() {
  AttemptResult a;
  a.kind = AttemptResult::kDelivered;
  a.diagnostic = "250 2.0.0 Ok: queued as 4F00";
  a.remote_mta = "mx.example[192.0.2.1]";
  a.tls_result = "";
  return a;
}

constexpr char kTlsExpired[] =
    "TLS required but not available for 24h: starttls-not-supported (mx.example[192.0.2.1])";

TEST(RecipientOutcomeTest, TlsFailuresBounceExactly24hAfterTheFirstOne) {
  const RetrySchedule schedule(RetrySchedule::DefaultSteps(), /*jitter=*/0.0);
  v1::Recipient r;
  r.set_state(v1::RECIPIENT_STATE_PENDING);

  // The host is unreachable for the first two hours: these deferrals start
  // the queue-lifetime history but not the TLS clock.
  absl::Time now = kArrival;
  EXPECT_EQ(ApplyAttempt(&r, ConnectionFailure(), kArrival, now, schedule), Decision::kDeferred);
  now = kArrival + absl::Hours(2);
  EXPECT_EQ(ApplyAttempt(&r, ConnectionFailure(), kArrival, now, schedule), Decision::kDeferred);
  EXPECT_FALSE(r.has_first_tls_failure_time());

  const absl::Time first_tls = kArrival + absl::Hours(3);
  now = first_tls;
  uint32_t attempts = r.attempts();
  // A day of deferrals, one every retry step, each in microseconds.
  while (now < first_tls + absl::Hours(23)) {
    ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, now, schedule), Decision::kDeferred)
        << now - first_tls;
    ++attempts;
    now += schedule.Step(attempts);
  }
  // A failure of another kind in between leaves the TLS clock alone.
  now = first_tls + absl::Hours(23) + absl::Minutes(30);
  EXPECT_EQ(ApplyAttempt(&r, TempReply(), kArrival, now, schedule), Decision::kDeferred);
  EXPECT_EQ(r.last_reason(), v1::DEFER_REASON_TEMPORARY_REPLY);

  now = first_tls + absl::Hours(23) + absl::Minutes(59);
  EXPECT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, now, schedule), Decision::kDeferred);
  EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_DEFERRED);
  EXPECT_EQ(r.status(), "4.7.5");
  EXPECT_FALSE(r.has_final_time());

  now = first_tls + absl::Hours(24);
  EXPECT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, now, schedule), Decision::kFailed);
  EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_FAILED);
  EXPECT_EQ(r.status(), "5.7.10");
  EXPECT_EQ(r.last_error(), kTlsExpired);
  EXPECT_EQ(r.tls_result(), "starttls-not-supported");
  EXPECT_EQ(r.remote_mta(), "mx.example[192.0.2.1]");
  EXPECT_EQ(r.last_reason(), v1::DEFER_REASON_TLS_REQUIRED);
  EXPECT_EQ(FromProtoTimestamp(r.first_failure_time()), kArrival);
  EXPECT_EQ(FromProtoTimestamp(r.first_tls_failure_time()), first_tls);
  EXPECT_EQ(FromProtoTimestamp(r.final_time()), now);
  EXPECT_EQ(r.attempts(), attempts + 3);
}

TEST(RecipientOutcomeTest, OtherFailuresAfterTheTlsDeadlineDoNotBounceForTls) {
  const RetrySchedule schedule;
  v1::Recipient r;
  EXPECT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, kArrival, schedule), Decision::kDeferred);
  // Past 24h, but this attempt never got as far as TLS: only the queue
  // lifetime can end it.
  const absl::Time now = kArrival + absl::Hours(30);
  EXPECT_EQ(ApplyAttempt(&r, ConnectionFailure(), kArrival, now, schedule), Decision::kDeferred);
  EXPECT_EQ(r.status(), "4.4.1");
  EXPECT_EQ(FromProtoTimestamp(r.first_tls_failure_time()), kArrival);
  // The next TLS failure ends it.
  EXPECT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, now + absl::Hours(1), schedule),
            Decision::kFailed);
  EXPECT_EQ(r.status(), "5.7.10");
}

TEST(RecipientOutcomeTest, TlsDiagnosticWithoutResultOrHop) {
  RetrySchedule schedule;
  schedule.set_tls_failure_max_defer(absl::Minutes(90));
  v1::Recipient r;
  AttemptResult tls = TlsFailure();
  tls.tls_result.clear();
  tls.remote_mta.clear();
  ASSERT_EQ(ApplyAttempt(&r, tls, kArrival, kArrival, schedule), Decision::kDeferred);
  ASSERT_EQ(ApplyAttempt(&r, tls, kArrival, kArrival + absl::Minutes(90), schedule),
            Decision::kFailed);
  EXPECT_EQ(r.last_error(), "TLS required but not available for 1h30m");
}

TEST(RecipientOutcomeTest, ExpiresAfterMaxQueueLifetime) {
  const RetrySchedule schedule;  // 120h
  v1::Recipient r;
  absl::Time now = kArrival + absl::Minutes(1);
  EXPECT_EQ(ApplyAttempt(&r, TempReply(), kArrival, now, schedule), Decision::kDeferred);
  now = kArrival + absl::Hours(120) - absl::Seconds(1);
  EXPECT_EQ(ApplyAttempt(&r, ConnectionFailure(), kArrival, now, schedule), Decision::kDeferred);
  EXPECT_FALSE(r.has_final_time());

  now = kArrival + absl::Hours(120);
  EXPECT_EQ(ApplyAttempt(&r, ConnectionFailure(), kArrival, now, schedule), Decision::kFailed);
  EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_FAILED);
  EXPECT_EQ(r.status(), "4.4.1");  // the last temporary code, as Postfix reports expiry
  EXPECT_THAT(r.last_error(), HasSubstr("queued too long (120h)"));
  EXPECT_THAT(r.last_error(), HasSubstr("connect to mx.example[192.0.2.1]:25: Connection refused"));
  EXPECT_EQ(r.last_reason(), v1::DEFER_REASON_CONNECTION);
  EXPECT_EQ(FromProtoTimestamp(r.first_failure_time()), kArrival + absl::Minutes(1));
  EXPECT_EQ(FromProtoTimestamp(r.final_time()), now);
  EXPECT_EQ(r.attempts(), 3u);
}

TEST(RecipientOutcomeTest, TlsExpiryWinsOverLifetimeExpiry) {
  RetrySchedule schedule;
  schedule.set_max_queue_lifetime(absl::Hours(24));
  v1::Recipient r;
  ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, kArrival, schedule), Decision::kDeferred);
  ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, kArrival + absl::Hours(24), schedule),
            Decision::kFailed);
  EXPECT_EQ(r.status(), "5.7.10");
  EXPECT_EQ(r.last_error(), kTlsExpired);
}

TEST(RecipientOutcomeTest, PermanentFailsAtOnce) {
  const RetrySchedule schedule;
  v1::Recipient r;
  r.set_state(v1::RECIPIENT_STATE_PENDING);
  const absl::Time now = kArrival + absl::Seconds(2);
  EXPECT_EQ(ApplyAttempt(&r, Permanent(), kArrival, now, schedule), Decision::kFailed);
  EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_FAILED);
  EXPECT_EQ(r.status(), "5.1.1");
  EXPECT_EQ(r.last_error(), "550 5.1.1 <bob@example.net>: unknown user");
  EXPECT_EQ(r.remote_mta(), "mx.example[192.0.2.1]");
  EXPECT_EQ(r.attempts(), 1u);
  EXPECT_EQ(FromProtoTimestamp(r.final_time()), now);
  EXPECT_FALSE(r.has_first_failure_time());  // that records deferrals only
}

TEST(RecipientOutcomeTest, PermanentAfterDeferralsKeepsTheHistory) {
  const RetrySchedule schedule;
  v1::Recipient r;
  ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, kArrival, schedule), Decision::kDeferred);
  AttemptResult p = Permanent();
  p.status.clear();
  EXPECT_EQ(ApplyAttempt(&r, p, kArrival, kArrival + absl::Hours(1), schedule), Decision::kFailed);
  EXPECT_EQ(r.status(), "5.0.0");  // the generic code when the reply had none
  EXPECT_EQ(FromProtoTimestamp(r.first_tls_failure_time()), kArrival);
  EXPECT_EQ(r.tls_result(), "");
  EXPECT_EQ(r.attempts(), 2u);
}

TEST(RecipientOutcomeTest, DeliveredRecordsTheHop) {
  const RetrySchedule schedule;
  v1::Recipient r;
  const absl::Time now = kArrival + absl::Seconds(1);
  EXPECT_EQ(ApplyAttempt(&r, Delivered(), kArrival, now, schedule), Decision::kDelivered);
  EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_EQ(r.status(), "2.0.0");
  EXPECT_EQ(r.last_error(), "250 2.0.0 Ok: queued as 4F00");
  EXPECT_EQ(r.remote_mta(), "mx.example[192.0.2.1]");
  EXPECT_EQ(FromProtoTimestamp(r.final_time()), now);
}

TEST(RecipientOutcomeTest, FirstFailureTimesAreSetOnce) {
  const RetrySchedule schedule;
  v1::Recipient r;
  const absl::Time t1 = kArrival + absl::Milliseconds(1500);  // sub-second survives
  ASSERT_EQ(ApplyAttempt(&r, TempReply(), kArrival, t1, schedule), Decision::kDeferred);
  const absl::Time t2 = t1 + absl::Minutes(1);
  ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, t2, schedule), Decision::kDeferred);
  ASSERT_EQ(ApplyAttempt(&r, TlsFailure(), kArrival, t2 + absl::Minutes(5), schedule),
            Decision::kDeferred);
  EXPECT_EQ(FromProtoTimestamp(r.first_failure_time()), t1);
  EXPECT_EQ(FromProtoTimestamp(r.first_tls_failure_time()), t2);
  EXPECT_EQ(r.attempts(), 3u);
  EXPECT_EQ(r.status(), "4.7.5");
  AttemptResult bare = ConnectionFailure();
  bare.status.clear();
  ASSERT_EQ(ApplyAttempt(&r, bare, kArrival, t2 + absl::Minutes(20), schedule),
            Decision::kDeferred);
  EXPECT_EQ(r.status(), "4.0.0");
  EXPECT_EQ(r.tls_result(), "");  // the last attempt's, not a stale one
}

v1::Envelope ThreeRecipients() {
  v1::Envelope e;
  e.set_queue_id("0005F3A1B2C3D403");
  e.set_sender("alice@example.org");
  *e.mutable_arrival_time() = ToProtoTimestamp(kArrival);
  for (const char* a : {"a@one.example", "b@two.example", "c@three.example"}) {
    v1::Recipient* r = e.add_recipients();
    r->set_address(a);
    r->set_state(v1::RECIPIENT_STATE_PENDING);
  }
  return e;
}

TEST(RecipientOutcomeTest, RecipientsOfOneMessageAreDecidedIndependently) {
  const RetrySchedule schedule;
  v1::Envelope e = ThreeRecipients();
  absl::Time now = kArrival;
  EXPECT_EQ(ApplyAttempt(e.mutable_recipients(0), Delivered(), kArrival, now, schedule),
            Decision::kDelivered);
  EXPECT_EQ(ApplyAttempt(e.mutable_recipients(1), Permanent(), kArrival, now, schedule),
            Decision::kFailed);
  EXPECT_EQ(ApplyAttempt(e.mutable_recipients(2), TlsFailure(), kArrival, now, schedule),
            Decision::kDeferred);
  EXPECT_EQ(e.recipients(0).state(), v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_EQ(e.recipients(1).state(), v1::RECIPIENT_STATE_FAILED);
  EXPECT_EQ(e.recipients(2).state(), v1::RECIPIENT_STATE_DEFERRED);
  EXPECT_FALSE(AllFinal(e));

  now += absl::Hours(24);
  EXPECT_EQ(ApplyAttempt(e.mutable_recipients(2), TlsFailure(), kArrival, now, schedule),
            Decision::kFailed);
  EXPECT_TRUE(AllFinal(e));
  // The others kept their own outcome.
  EXPECT_EQ(e.recipients(0).status(), "2.0.0");
  EXPECT_EQ(e.recipients(1).status(), "5.1.1");
  EXPECT_EQ(e.recipients(2).status(), "5.7.10");
  EXPECT_EQ(e.recipients(0).attempts(), 1u);
}

TEST(RecipientOutcomeTest, AllFinalOfNoRecipients) { EXPECT_TRUE(AllFinal(v1::Envelope())); }

TEST(NextAttemptTest, FollowsTheMessageAttemptsWithJitter) {
  const RetrySchedule schedule;
  std::mt19937_64 rng(99);
  v1::Envelope e = ThreeRecipients();
  const absl::Time now = kArrival + absl::Minutes(10);
  for (uint32_t attempts : {1u, 3u, 9u}) {
    e.mutable_schedule()->set_attempts(attempts);
    const absl::Duration step = schedule.Step(attempts);
    for (int i = 0; i < 50; ++i) {
      const absl::Time next = NextAttempt(e, now, schedule, rng);
      EXPECT_GE(next - now, step * 0.9) << attempts;
      EXPECT_LE(next - now, step * 1.1) << attempts;
    }
  }
}

TEST(NextAttemptTest, NotLaterThanTheQueueLifetime) {
  const RetrySchedule schedule(RetrySchedule::DefaultSteps(), /*jitter=*/0.0);
  std::mt19937_64 rng(1);
  v1::Envelope e = ThreeRecipients();
  e.mutable_schedule()->set_attempts(40);
  const absl::Time now = kArrival + absl::Hours(119) + absl::Minutes(30);
  EXPECT_EQ(NextAttempt(e, now, schedule, rng), kArrival + absl::Hours(120));
  // With every recipient final there is nothing to expire.
  for (auto& r : *e.mutable_recipients()) r.set_state(v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_EQ(NextAttempt(e, now, schedule, rng), now + absl::Hours(1));
  // A deadline already behind us is no reason to retry at once.
  e.mutable_recipients(0)->set_state(v1::RECIPIENT_STATE_PENDING);
  const absl::Time late = kArrival + absl::Hours(121);
  EXPECT_EQ(NextAttempt(e, late, schedule, rng), late + absl::Hours(1));
}

TEST(NextAttemptTest, NotLaterThanTheTlsDeadline) {
  const RetrySchedule schedule(RetrySchedule::DefaultSteps(), /*jitter=*/0.0);
  std::mt19937_64 rng(1);
  v1::Envelope e = ThreeRecipients();
  const absl::Time first_tls = kArrival + absl::Minutes(7);
  ASSERT_EQ(ApplyAttempt(e.mutable_recipients(1), TlsFailure(), kArrival, first_tls, schedule),
            Decision::kDeferred);
  e.mutable_schedule()->set_attempts(30);
  const absl::Time now = first_tls + absl::Hours(23) + absl::Minutes(45);
  EXPECT_EQ(NextAttempt(e, now, schedule, rng), first_tls + absl::Hours(24));
  // After a deferral for another reason the TLS limit cannot end it next time.
  ASSERT_EQ(ApplyAttempt(e.mutable_recipients(1), ConnectionFailure(), kArrival, now, schedule),
            Decision::kDeferred);
  EXPECT_EQ(NextAttempt(e, now, schedule, rng), now + absl::Hours(1));
}

// The whole day driven by the scheduler's own clock: every retry before the
// deadline defers, and the retry clamped to it bounces.
TEST(NextAttemptTest, TlsDayDrivenByTheSchedule) {
  const RetrySchedule schedule;  // jittered
  std::mt19937_64 rng(5);
  v1::Envelope e = ThreeRecipients();
  e.mutable_recipients()->DeleteSubrange(1, 2);
  v1::Recipient* r = e.mutable_recipients(0);
  absl::Time now = kArrival;
  const absl::Time deadline = kArrival + absl::Hours(24);
  int tries = 0;
  for (;;) {
    ++tries;
    ASSERT_LT(tries, 100);
    Decision d = ApplyAttempt(r, TlsFailure(), kArrival, now, schedule);
    if (d == Decision::kFailed) break;
    ASSERT_EQ(d, Decision::kDeferred);
    ASSERT_LT(now, deadline);
    e.mutable_schedule()->set_attempts(e.schedule().attempts() + 1);
    now = NextAttempt(e, now, schedule, rng);
  }
  EXPECT_EQ(now, deadline);
  EXPECT_EQ(r->status(), "5.7.10");
  EXPECT_EQ(r->last_error(), kTlsExpired);
  EXPECT_EQ(static_cast<int>(r->attempts()), tries);
  EXPECT_GT(tries, 20);  // 1m, 5m, 15m, 30m, then hourly
}

TEST(DelayWarningTest, DeferredRecipientsPastTheWarningTime) {
  RetrySchedule schedule;
  v1::Envelope e = ThreeRecipients();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ApplyAttempt(e.mutable_recipients(i), TempReply(), kArrival, kArrival, schedule),
              Decision::kDeferred);
  }
  ASSERT_EQ(ApplyAttempt(e.mutable_recipients(1), Delivered(), kArrival, kArrival + absl::Hours(1),
                         schedule),
            Decision::kDelivered);
  const absl::Time later = kArrival + absl::Hours(5);
  EXPECT_THAT(DueForDelayWarning(e, later, schedule), IsEmpty());  // off by default

  schedule.set_delay_warning(absl::Hours(4));
  EXPECT_THAT(DueForDelayWarning(e, kArrival + absl::Hours(4) - absl::Seconds(1), schedule),
              IsEmpty());
  EXPECT_THAT(DueForDelayWarning(e, kArrival + absl::Hours(4), schedule), ElementsAre(0, 2));
  e.mutable_recipients(0)->set_delay_notified(true);
  EXPECT_THAT(DueForDelayWarning(e, later, schedule), ElementsAre(2));
}

TEST(DelayWarningTest, OnlyWhenSomeoneWantsOne) {
  RetrySchedule schedule;
  schedule.set_delay_warning(absl::Hours(4));
  v1::Envelope e = ThreeRecipients();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ApplyAttempt(e.mutable_recipients(i), TempReply(), kArrival, kArrival, schedule),
              Decision::kDeferred);
  }
  e.mutable_recipients(0)->set_notify("FAILURE");
  e.mutable_recipients(1)->set_notify("SUCCESS,DELAY");
  e.mutable_recipients(2)->set_notify("NEVER");
  const absl::Time later = kArrival + absl::Hours(5);
  EXPECT_THAT(DueForDelayWarning(e, later, schedule), ElementsAre(1));

  v1::Envelope bounce = e;
  bounce.set_sender("");  // null sender: nobody to tell
  EXPECT_THAT(DueForDelayWarning(bounce, later, schedule), IsEmpty());
  v1::Envelope dsn = e;
  dsn.set_is_dsn(true);
  EXPECT_THAT(DueForDelayWarning(dsn, later, schedule), IsEmpty());
}

TEST(LabelTest, DeferReasonsAndDecisions) {
  EXPECT_EQ(DeferReasonLabel(v1::DEFER_REASON_CONNECTION), "connection");
  EXPECT_EQ(DeferReasonLabel(v1::DEFER_REASON_TEMPORARY_REPLY), "temporary_reply");
  EXPECT_EQ(DeferReasonLabel(v1::DEFER_REASON_TLS_REQUIRED), "tls_required");
  EXPECT_EQ(DeferReasonLabel(v1::DEFER_REASON_DNS), "dns");
  EXPECT_EQ(DeferReasonLabel(v1::DEFER_REASON_UNSPECIFIED), "unspecified");
  EXPECT_EQ(DecisionLabel(Decision::kDelivered), "delivered");
  EXPECT_EQ(DecisionLabel(Decision::kDeferred), "deferred");
  EXPECT_EQ(DecisionLabel(Decision::kFailed), "failed");
}

}  // namespace
}  // namespace postern::queue
