#include "queue/queue_admin.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/proto_time.h"

namespace postern::queue {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1795000000);

v1::Recipient* AddRecipient(v1::Envelope* e, const std::string& address, v1::RecipientState state,
                            const std::string& error = "") {
  v1::Recipient* r = e->add_recipients();
  r->set_address(address);
  r->set_state(state);
  r->set_last_error(error);
  return r;
}

// A message that arrived `age` before kNow, to one pending recipient.
v1::Envelope Message(int n, const std::string& sender = "alice@client.test",
                     absl::Duration age = absl::Minutes(5)) {
  v1::Envelope e;
  e.set_queue_id(absl::StrFormat("%014X%02X", 0x5F3A1B2C3D400 + n, n % 3));
  e.set_shard(n % 3);
  e.set_sender(sender);
  e.set_body_size(1000 + n);
  e.mutable_arrival_time()->set_seconds(absl::ToUnixSeconds(kNow - age));
  e.mutable_schedule()->mutable_next_attempt()->set_seconds(absl::ToUnixSeconds(kNow) + 60);
  AddRecipient(&e, absl::StrCat("bob", n, "@example.org"), v1::RECIPIENT_STATE_PENDING);
  return e;
}

TEST(StateOf, HeldBeatsEverything) {
  v1::Envelope e = Message(1);
  e.mutable_recipients(0)->set_state(v1::RECIPIENT_STATE_DEFERRED);
  e.mutable_schedule()->set_held(true);
  EXPECT_EQ(StateOf(e, false), v1::MESSAGE_STATE_HELD);
  EXPECT_EQ(StateOf(e, true), v1::MESSAGE_STATE_HELD);
}

TEST(StateOf, DeferredWhenAnyRecipientWaitsUnlessInDelivery) {
  v1::Envelope e = Message(1);
  EXPECT_EQ(StateOf(e, false), v1::MESSAGE_STATE_ACTIVE);
  AddRecipient(&e, "carol@example.net", v1::RECIPIENT_STATE_DEFERRED, "451 4.3.0 try later");
  EXPECT_EQ(StateOf(e, false), v1::MESSAGE_STATE_DEFERRED);
  EXPECT_EQ(StateOf(e, true), v1::MESSAGE_STATE_ACTIVE);
}

TEST(Matches, SenderIsACaseInsensitiveSubstring) {
  v1::Envelope e = Message(1, "Alice@Client.Test");
  v1::ListFilter f;
  f.set_sender("client.TEST");
  EXPECT_TRUE(Matches(e, f, kNow, false));
  f.set_sender("mallory");
  EXPECT_FALSE(Matches(e, f, kNow, false));
}

TEST(Matches, NullSenderMatchesOnlyAnEmptyFilter) {
  v1::Envelope e = Message(1, "");
  v1::ListFilter f;
  EXPECT_TRUE(Matches(e, f, kNow, false));
  f.set_sender("a");
  EXPECT_FALSE(Matches(e, f, kNow, false));
}

TEST(Matches, RecipientDomainExactOrWithSubdomains) {
  v1::Envelope e = Message(1);
  e.mutable_recipients(0)->set_address("bob@Mail.Example.ORG");
  v1::ListFilter f;
  f.set_recipient_domain("mail.example.org");
  EXPECT_TRUE(Matches(e, f, kNow, false));
  f.set_recipient_domain("example.org");
  EXPECT_FALSE(Matches(e, f, kNow, false));
  f.set_recipient_domain(".example.org");
  EXPECT_TRUE(Matches(e, f, kNow, false));
  f.set_recipient_domain(".mail.example.org");
  EXPECT_TRUE(Matches(e, f, kNow, false)) << "the domain itself matches too";
  f.set_recipient_domain(".le.org");
  EXPECT_FALSE(Matches(e, f, kNow, false)) << "only whole labels";
}

TEST(Matches, RecipientDomainIgnoresFinalRecipients) {
  v1::Envelope e = Message(1);
  AddRecipient(&e, "done@example.net", v1::RECIPIENT_STATE_DELIVERED);
  AddRecipient(&e, "gone@example.com", v1::RECIPIENT_STATE_FAILED);
  v1::ListFilter f;
  f.set_recipient_domain("example.net");
  EXPECT_FALSE(Matches(e, f, kNow, false));
  f.set_recipient_domain("example.com");
  EXPECT_FALSE(Matches(e, f, kNow, false));
  f.set_recipient_domain("example.org");
  EXPECT_TRUE(Matches(e, f, kNow, false));
}

TEST(Matches, StateAndMinimumAge) {
  v1::Envelope e = Message(1, "a@b", absl::Hours(2));
  v1::ListFilter f;
  f.set_state(v1::MESSAGE_STATE_HELD);
  EXPECT_FALSE(Matches(e, f, kNow, false));
  e.mutable_schedule()->set_held(true);
  EXPECT_TRUE(Matches(e, f, kNow, false));

  f.set_min_age_seconds(7200);
  EXPECT_TRUE(Matches(e, f, kNow, false));
  f.set_min_age_seconds(7201);
  EXPECT_FALSE(Matches(e, f, kNow, false));
}

TEST(Summarize, ListsOnlyRecipientsNotYetFinalAndTheFirstDeferralsError) {
  v1::Envelope e = Message(7, "alice@client.test", absl::Seconds(90));
  AddRecipient(&e, "done@example.net", v1::RECIPIENT_STATE_DELIVERED, "250 ok");
  AddRecipient(&e, "slow@example.net", v1::RECIPIENT_STATE_DEFERRED, "451 4.7.1 greylisted");
  AddRecipient(&e, "slow2@example.net", v1::RECIPIENT_STATE_DEFERRED, "421 4.4.2 timeout");
  AddRecipient(&e, "bad@example.net", v1::RECIPIENT_STATE_FAILED, "550 5.1.1 unknown");
  e.mutable_schedule()->set_attempts(3);

  v1::MessageSummary s = Summarize(e, kNow, false);
  EXPECT_EQ(s.queue_id(), e.queue_id());
  EXPECT_EQ(s.shard(), 1u);
  EXPECT_EQ(s.sender(), "alice@client.test");
  EXPECT_EQ(
      std::vector<std::string>(s.recipients().begin(), s.recipients().end()),
      (std::vector<std::string>{"bob7@example.org", "slow@example.net", "slow2@example.net"}));
  EXPECT_EQ(s.state(), v1::MESSAGE_STATE_DEFERRED);
  EXPECT_EQ(s.size(), 1007u);
  EXPECT_EQ(s.age_seconds(), 90u);
  EXPECT_EQ(s.attempts(), 3u);
  EXPECT_EQ(s.last_error(), "451 4.7.1 greylisted");
}

TEST(Summarize, AgeIsNeverNegative) {
  v1::Envelope e = Message(1, "a@b", -absl::Minutes(3));  // arrived "in the future"
  EXPECT_EQ(Summarize(e, kNow, false).age_seconds(), 0u);
}

// A spool of `n` messages in id order, walked like SpoolStore::ForEachEnvelope.
class FakeSpool {
 public:
  explicit FakeSpool(int n) {
    for (int i = 0; i < n; ++i) envelopes.push_back(Message(i, i % 2 ? "odd@x" : "even@x"));
  }
  absl::Status Walk(absl::FunctionRef<absl::Status(const v1::Envelope&)> fn) {
    for (const auto& e : envelopes) {
      ++visited;
      absl::Status s = fn(e);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }
  std::vector<v1::Envelope> envelopes;
  int visited = 0;
};

std::vector<std::string> Ids(const v1::ListReply& reply) {
  std::vector<std::string> out;
  for (const auto& m : reply.messages()) out.push_back(m.queue_id());
  return out;
}

absl::Status List(FakeSpool& spool, const v1::ListRequest& request, v1::ListReply* reply,
                  const std::set<std::string>& busy = {}) {
  return ListMessages([&](auto fn) { return spool.Walk(fn); }, request, kNow,
                      [&](const std::string& id) { return busy.count(id) > 0; }, reply);
}

TEST(ListMessages, PagesThroughEverythingInIdOrderWithoutGapsOrRepeats) {
  FakeSpool spool(25);
  v1::ListRequest request;
  request.set_limit(10);
  std::vector<std::string> seen;
  int pages = 0;
  while (true) {
    v1::ListReply reply;
    ASSERT_TRUE(List(spool, request, &reply).ok());
    ++pages;
    for (const auto& id : Ids(reply)) seen.push_back(id);
    if (reply.next_after_queue_id().empty()) break;
    EXPECT_EQ(reply.next_after_queue_id(), seen.back());
    request.set_after_queue_id(reply.next_after_queue_id());
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(seen[i], spool.envelopes[i].queue_id());
}

TEST(ListMessages, AnExactlyFullLastPageSaysNoMore) {
  FakeSpool spool(10);
  v1::ListRequest request;
  request.set_limit(10);
  v1::ListReply reply;
  ASSERT_TRUE(List(spool, request, &reply).ok());
  EXPECT_EQ(reply.messages_size(), 10);
  EXPECT_EQ(reply.next_after_queue_id(), "");
}

TEST(ListMessages, StopsTheWalkOnceTheNextPageIsKnownToExist) {
  FakeSpool spool(50);
  v1::ListRequest request;
  request.set_limit(5);
  v1::ListReply reply;
  ASSERT_TRUE(List(spool, request, &reply).ok());
  EXPECT_EQ(reply.messages_size(), 5);
  EXPECT_EQ(spool.visited, 6);
}

TEST(ListMessages, FiltersAndMarksMessagesInDelivery) {
  FakeSpool spool(8);
  spool.envelopes[3].mutable_recipients(0)->set_state(v1::RECIPIENT_STATE_DEFERRED);
  spool.envelopes[5].mutable_recipients(0)->set_state(v1::RECIPIENT_STATE_DEFERRED);
  v1::ListRequest request;
  request.mutable_filter()->set_sender("ODD");
  v1::ListReply reply;
  ASSERT_TRUE(List(spool, request, &reply, {spool.envelopes[5].queue_id()}).ok());
  EXPECT_EQ(Ids(reply), (std::vector<std::string>{
                            spool.envelopes[1].queue_id(), spool.envelopes[3].queue_id(),
                            spool.envelopes[5].queue_id(), spool.envelopes[7].queue_id()}));
  EXPECT_EQ(reply.messages(1).state(), v1::MESSAGE_STATE_DEFERRED);
  EXPECT_EQ(reply.messages(2).state(), v1::MESSAGE_STATE_ACTIVE);  // in delivery

  request.mutable_filter()->set_state(v1::MESSAGE_STATE_DEFERRED);
  ASSERT_TRUE(List(spool, request, &reply, {spool.envelopes[5].queue_id()}).ok());
  EXPECT_EQ(Ids(reply), (std::vector<std::string>{spool.envelopes[3].queue_id()}));
}

TEST(ListMessages, LimitDefaultsTo100AndIsCappedAt1000) {
  EXPECT_EQ(EffectiveListLimit(0), 100u);
  EXPECT_EQ(EffectiveListLimit(7), 7u);
  EXPECT_EQ(EffectiveListLimit(5000), 1000u);
  FakeSpool spool(150);
  v1::ListRequest request;
  v1::ListReply reply;
  ASSERT_TRUE(List(spool, request, &reply).ok());
  EXPECT_EQ(reply.messages_size(), 100);
  EXPECT_EQ(reply.next_after_queue_id(), spool.envelopes[99].queue_id());
}

TEST(ListMessages, WalkErrorsArePassedOn) {
  v1::ListReply reply;
  absl::Status s =
      ListMessages([](auto) { return absl::UnavailableError("spool unreadable"); },
                   v1::ListRequest(), kNow, [](const std::string&) { return false; }, &reply);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
}

v1::ListReply Page(std::vector<std::string> ids, std::string next = "") {
  v1::ListReply r;
  for (auto& id : ids) r.add_messages()->set_queue_id(id);
  r.set_next_after_queue_id(next);
  return r;
}

TEST(MergeListPages, InterleavesWorkersInIdOrder) {
  v1::ListReply out = MergeListPages({Page({"A1", "A4"}), Page({"A2", "A3", "A5"})}, 10);
  EXPECT_EQ(Ids(out), (std::vector<std::string>{"A1", "A2", "A3", "A4", "A5"}));
  EXPECT_EQ(out.next_after_queue_id(), "");
}

TEST(MergeListPages, CutsAtTheLimitAndContinuesAfterTheLastId) {
  v1::ListReply out = MergeListPages({Page({"1", "5"}), Page({"2", "3"})}, 3);
  EXPECT_EQ(Ids(out), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(out.next_after_queue_id(), "3");
}

TEST(MergeListPages, AWorkerWithMoreKeepsThePageOpen) {
  // Worker one had more after "2"; its page is wholly inside the merge.
  v1::ListReply out = MergeListPages({Page({"1", "2"}, "2"), Page({"3"})}, 2);
  EXPECT_EQ(Ids(out), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(out.next_after_queue_id(), "2");
}

TEST(PlanAction, RetryMakesItDueNowUnlessHeld) {
  v1::Envelope e = Message(1);
  auto plan = PlanAction(v1::QUEUE_ACTION_RETRY, e, kNow);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->remove);
  EXPECT_EQ(FromProtoTimestamp(plan->envelope.schedule().next_attempt()), kNow);
  EXPECT_FALSE(plan->envelope.schedule().held());
  EXPECT_TRUE(plan->bounce_recipients.empty());

  e.mutable_schedule()->set_held(true);
  plan = PlanAction(v1::QUEUE_ACTION_RETRY, e, kNow);
  ASSERT_FALSE(plan.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(plan.status()));
  EXPECT_EQ(plan.status().message(), "held; release it first");
}

TEST(PlanAction, HoldThenReleaseIsDueNow) {
  v1::Envelope e = Message(1);
  auto held = PlanAction(v1::QUEUE_ACTION_HOLD, e, kNow);
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->envelope.schedule().held());
  EXPECT_FALSE(held->remove);
  EXPECT_EQ(held->envelope.recipients(0).state(), v1::RECIPIENT_STATE_PENDING);

  auto again = PlanAction(v1::QUEUE_ACTION_HOLD, held->envelope, kNow);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->envelope.schedule().held());

  const absl::Time later = kNow + absl::Milliseconds(1500);
  auto released = PlanAction(v1::QUEUE_ACTION_RELEASE, held->envelope, later);
  ASSERT_TRUE(released.ok());
  EXPECT_FALSE(released->envelope.schedule().held());
  EXPECT_EQ(FromProtoTimestamp(released->envelope.schedule().next_attempt()), later);
  EXPECT_FALSE(released->remove);
}

TEST(PlanAction, DeleteRemovesWithoutNotice) {
  auto plan = PlanAction(v1::QUEUE_ACTION_DELETE, Message(1), kNow);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->remove);
  EXPECT_TRUE(plan->bounce_recipients.empty());
}

TEST(PlanAction, BounceFailsEveryRecipientNotYetFinal) {
  v1::Envelope e = Message(1);
  AddRecipient(&e, "done@example.net", v1::RECIPIENT_STATE_DELIVERED)->set_status("2.0.0");
  AddRecipient(&e, "slow@example.net", v1::RECIPIENT_STATE_DEFERRED, "451 4.7.1 greylisted");
  AddRecipient(&e, "bad@example.net", v1::RECIPIENT_STATE_FAILED, "550 5.1.1 unknown");
  e.mutable_schedule()->set_held(true);  // a held message can be bounced

  auto plan = PlanAction(v1::QUEUE_ACTION_BOUNCE, e, kNow);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->remove);
  EXPECT_EQ(plan->bounce_recipients, (std::vector<int>{0, 2}));
  for (int i : {0, 2}) {
    const v1::Recipient& r = plan->envelope.recipients(i);
    EXPECT_EQ(r.state(), v1::RECIPIENT_STATE_FAILED);
    EXPECT_EQ(r.status(), "5.0.0");
    EXPECT_EQ(r.last_error(), "bounced by the administrator");
    EXPECT_EQ(FromProtoTimestamp(r.final_time()), kNow);
  }
  EXPECT_EQ(plan->envelope.recipients(1).state(), v1::RECIPIENT_STATE_DELIVERED);
  EXPECT_EQ(plan->envelope.recipients(1).status(), "2.0.0");
  EXPECT_EQ(plan->envelope.recipients(3).last_error(), "550 5.1.1 unknown");
  EXPECT_FALSE(plan->envelope.recipients(3).has_final_time());
}

TEST(PlanAction, UnspecifiedActionIsInvalid) {
  auto plan = PlanAction(v1::QUEUE_ACTION_UNSPECIFIED, Message(1), kNow);
  EXPECT_TRUE(absl::IsInvalidArgument(plan.status()));
  EXPECT_STREQ(QueueActionName(v1::QUEUE_ACTION_BOUNCE), "bounce");
}

}  // namespace
}  // namespace postern::queue
