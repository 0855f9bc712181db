// Leases: keys of an expired or revoked lease go in one audited revision.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/policy_store/embedded_policy_store.h"
#include "control/policy_store/policy_store.h"
#include "control/policy_store/test_support.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using ::postern::control::testing::PairsAt;
using ::postern::control::testing::Put;
using ::postern::control::testing::WatchRecorder;
using Pairs = std::vector<std::pair<std::string, std::string>>;

class LeaseTest : public testing::StoreTest {
 protected:
  int64_t Grant(absl::Duration ttl) {
    auto lease = store_->GrantLease(ttl);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? lease->id : 0;
  }
};

TEST_F(LeaseTest, ExpiryDeletesTheKeysInOneAuditedRevision) {
  const int64_t lease = Grant(absl::Seconds(10));
  ASSERT_GT(lease, 0);
  EXPECT_EQ(Revision(), 0);  // granting a lease is not a revision
  ASSERT_TRUE(Put(*store_, "nodes/a", "up", lease).ok());
  ASSERT_TRUE(Put(*store_, "nodes/b", "up", lease).ok());
  ASSERT_TRUE(Put(*store_, "nodes/c", "static").ok());
  EXPECT_EQ(store_->Get("nodes/a")->lease(), lease);
  auto ttl = store_->LeaseTimeToLive(lease);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->keys, (std::vector<std::string>{"nodes/a", "nodes/b"}));
  WatchRecorder recorder;
  ASSERT_TRUE(store_->Watch(KeySelector::Prefix("nodes/"), 3, recorder.Callback()).ok());

  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 0);
  EXPECT_EQ(Revision(), 3);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 1);
  EXPECT_EQ(Revision(), 4);
  EXPECT_EQ(PairsAt(*store_, "nodes/"), (Pairs{{"nodes/c", "static"}}));

  auto audit = store_->History(1);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].revision(), 4);
  EXPECT_EQ((*audit)[0].cause(), v1::AUDIT_CAUSE_LEASE_EXPIRED);
  EXPECT_EQ((*audit)[0].lease(), lease);
  EXPECT_NE((*audit)[0].summary().find("expired"), std::string::npos);
  ASSERT_EQ((*audit)[0].changes_size(), 2);
  EXPECT_EQ((*audit)[0].changes(0).kind(), v1::CHANGE_KIND_REMOVED);

  ASSERT_TRUE(recorder.WaitFor(1));
  EXPECT_EQ(recorder.responses()[0].revision, 4);
  EXPECT_EQ(recorder.responses()[0].events.size(), 2u);

  EXPECT_TRUE(absl::IsNotFound(store_->KeepAlive(lease).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->LeaseTimeToLive(lease).status()));
  EXPECT_TRUE(absl::IsNotFound(Put(*store_, "nodes/a", "again", lease).status()));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 0);
}

TEST_F(LeaseTest, KeepAliveExtends) {
  const int64_t lease = Grant(absl::Seconds(10));
  ASSERT_TRUE(Put(*store_, "k", "v", lease).ok());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(8));
    auto ttl = store_->KeepAlive(lease);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_EQ(*ttl, absl::Seconds(10));
    EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 0);
  }
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(store_->LeaseTimeToLive(lease)->remaining, absl::Seconds(6));
  clock_.Advance(absl::Seconds(6));
  // Past the deadline: no renewal, even before the expiry ran.
  EXPECT_TRUE(absl::IsNotFound(store_->KeepAlive(lease).status()));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 1);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("k").status()));
}

TEST_F(LeaseTest, RevokeIsAuditedWithTheCaller) {
  const int64_t lease = Grant(absl::Seconds(60));
  ASSERT_TRUE(Put(*store_, "a", "1", lease).ok());
  auto revision = store_->RevokeLease(lease, {"carol", "10.1.1.1:5000", "node leaves"});
  ASSERT_TRUE(revision.ok()) << revision.status();
  EXPECT_EQ(*revision, 2);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("a").status()));
  auto audit = store_->History(1);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].cause(), v1::AUDIT_CAUSE_LEASE_REVOKED);
  EXPECT_EQ((*audit)[0].actor(), "carol");
  EXPECT_EQ((*audit)[0].summary(), "node leaves");
  EXPECT_EQ((*audit)[0].lease(), lease);
  EXPECT_TRUE(absl::IsNotFound(store_->RevokeLease(lease, {}).status()));
  // A lease without keys goes without a revision.
  const int64_t empty = Grant(absl::Seconds(60));
  auto after = store_->RevokeLease(empty, {"carol", "", ""});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, 2);
  EXPECT_EQ(Revision(), 2);
}

TEST_F(LeaseTest, PutWithoutTheLeaseDetachesTheKey) {
  const int64_t first = Grant(absl::Seconds(10));
  const int64_t second = Grant(absl::Seconds(100));
  EXPECT_NE(first, second);
  ASSERT_TRUE(Put(*store_, "detached", "1", first).ok());
  ASSERT_TRUE(Put(*store_, "moved", "1", first).ok());
  ASSERT_TRUE(Put(*store_, "kept", "1", first).ok());
  ASSERT_TRUE(Put(*store_, "detached", "2").ok());
  ASSERT_TRUE(Put(*store_, "moved", "2", second).ok());
  EXPECT_EQ(store_->LeaseTimeToLive(first)->keys, std::vector<std::string>{"kept"});
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 1);
  EXPECT_EQ(PairsAt(*store_, ""), (Pairs{{"detached", "2"}, {"moved", "2"}}));
  auto audit = store_->History(1);
  ASSERT_EQ((*audit)[0].changes_size(), 1);
  EXPECT_EQ((*audit)[0].changes(0).key(), "kept");
}

TEST_F(LeaseTest, UnknownLeaseChangesNothing) {
  ASSERT_TRUE(Put(*store_, "a", "1").ok());
  auto refused = Put(*store_, "b", "1", 77);
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  EXPECT_EQ(Revision(), 1);
  EXPECT_TRUE(absl::IsNotFound(store_->KeepAlive(77).status()));
}

TEST_F(LeaseTest, TtlBounds) {
  EXPECT_TRUE(absl::IsInvalidArgument(store_->GrantLease(absl::Milliseconds(10)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->GrantLease(absl::Seconds(-5)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->GrantLease(absl::InfiniteDuration()).status()));
  EXPECT_TRUE(store_->GrantLease(absl::Seconds(1)).ok());
}

TEST_F(LeaseTest, ReopenKeepsLeasesAndRestartsTheirTtl) {
  const int64_t lease = Grant(absl::Seconds(10));
  const int64_t revoked = Grant(absl::Seconds(10));
  ASSERT_TRUE(Put(*store_, "a", "1", lease).ok());
  ASSERT_TRUE(store_->RevokeLease(revoked, {"x", "", ""}).ok());
  clock_.Advance(absl::Seconds(9));
  Reopen();
  auto info = store_->LeaseTimeToLive(lease);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->remaining, absl::Seconds(10));  // full TTL after a restart
  EXPECT_EQ(info->keys, std::vector<std::string>{"a"});
  EXPECT_TRUE(absl::IsNotFound(store_->LeaseTimeToLive(revoked).status()));
  // Ids are not reused.
  const int64_t next = Grant(absl::Seconds(10));
  EXPECT_GT(next, revoked);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(*store_->ExpireLeases(clock_.Now()), 2);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("a").status()));
}

TEST_F(LeaseTest, TimerExpiresLeasesInProduction) {
  EmbeddedPolicyStoreOptions options;  // real clocks
  options.lease_check_interval = absl::Milliseconds(10);
  options.min_lease_ttl = absl::Milliseconds(10);
  store_.reset();
  auto store = EmbeddedPolicyStore::Open(dir_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(*store);
  auto lease = store_->GrantLease(absl::Milliseconds(100));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(Put(*store_, "ephemeral", "1", lease->id).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (store_->Get("ephemeral").ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(absl::IsNotFound(store_->Get("ephemeral").status()));
  EXPECT_EQ(store_->History(1)->at(0).cause(), v1::AUDIT_CAUSE_LEASE_EXPIRED);
}

}  // namespace
}  // namespace postern::control
