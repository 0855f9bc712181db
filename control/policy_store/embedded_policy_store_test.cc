// The key/value, transaction, history, audit and restart behaviour of the
// embedded policy store, on a real RocksDB in TEST_TMPDIR.
#include "control/policy_store/embedded_policy_store.h"

#include <rocksdb/db.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/policy_store/policy_store.h"
#include "control/policy_store/test_support.h"
#include "gtest/gtest.h"

namespace postern::control {
namespace {

using ::postern::control::testing::Apply;
using ::postern::control::testing::PairsAt;
using ::postern::control::testing::Put;
using ::postern::control::testing::TestAudit;
using ::postern::control::testing::TestOptions;
using Pairs = std::vector<std::pair<std::string, std::string>>;

class EmbeddedPolicyStoreTest : public testing::StoreTest {
 protected:
  absl::StatusOr<TxnResult> Txn(std::vector<Compare> compares, std::vector<TxnOp> ops) {
    TxnRequest request;
    request.compares = std::move(compares);
    request.ops = std::move(ops);
    request.audit = TestAudit();
    return store_->Txn(request);
  }
};

TEST_F(EmbeddedPolicyStoreTest, NewStoreIsEmptyAtRevisionZero) {
  EXPECT_EQ(Revision(), 0);
  auto range = store_->Range({KeySelector::Prefix(""), 0, 0});
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_TRUE(range->kvs.empty());
  EXPECT_EQ(range->revision, 0);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("nothing").status()));
  auto audit = store_->History(10);
  ASSERT_TRUE(audit.ok());
  EXPECT_TRUE(audit->empty());
}

TEST_F(EmbeddedPolicyStoreTest, PutGetAndRangeByPrefix) {
  ASSERT_EQ(*Put(*store_, "policy/relay/a", "1"), 1);
  ASSERT_EQ(*Put(*store_, "policy/relay/b", "2"), 2);
  ASSERT_EQ(*Put(*store_, "policy/tls/x", "3"), 3);
  ASSERT_EQ(*Put(*store_, "policy/relay", "exact"), 4);  // a key that is also a prefix
  ASSERT_EQ(*Put(*store_, "policy/relay/a", "1bis"), 5);

  EXPECT_EQ(PairsAt(*store_, "policy/relay/"),
            (Pairs{{"policy/relay/a", "1bis"}, {"policy/relay/b", "2"}}));
  EXPECT_EQ(
      PairsAt(*store_, "policy/relay"),
      (Pairs{{"policy/relay", "exact"}, {"policy/relay/a", "1bis"}, {"policy/relay/b", "2"}}));
  EXPECT_EQ(PairsAt(*store_, "").size(), 4u);
  EXPECT_TRUE(PairsAt(*store_, "policy/none/").empty());

  auto a = store_->Get("policy/relay/a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->value(), "1bis");
  EXPECT_EQ(a->create_revision(), 1);
  EXPECT_EQ(a->mod_revision(), 5);
  EXPECT_EQ(a->version(), 2);
  EXPECT_EQ(a->lease(), 0);

  // One key, not a prefix.
  auto exact = store_->Range({KeySelector::Key("policy/relay"), 0, 0});
  ASSERT_TRUE(exact.ok());
  ASSERT_EQ(exact->kvs.size(), 1u);
  EXPECT_EQ(exact->kvs[0].value(), "exact");
  EXPECT_EQ(exact->revision, 5);

  // A limit cuts the result and says so.
  auto limited = store_->Range({KeySelector::Prefix("policy/"), 0, 2});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->kvs.size(), 2u);
  EXPECT_TRUE(limited->more);
  auto all = store_->Range({KeySelector::Prefix("policy/"), 0, 4});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), 4u);
  EXPECT_FALSE(all->more);
}

TEST_F(EmbeddedPolicyStoreTest, BinaryKeysAndValues) {
  const std::string key("bin/\x00\xff\x01", 7);
  const std::string value("\x00\x01\x02\xff", 4);
  ASSERT_TRUE(Put(*store_, key, value).ok());
  ASSERT_TRUE(Put(*store_, std::string("bin/\xff\xff", 6), "max").ok());
  auto kv = store_->Get(key);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->value(), value);
  EXPECT_EQ(PairsAt(*store_, "bin/").size(), 2u);
  EXPECT_EQ(PairsAt(*store_, std::string("bin/\xff", 5)).size(), 1u);
}

TEST_F(EmbeddedPolicyStoreTest, EachTransactionIsOneRevision) {
  auto result = Txn({}, {TxnOp::Put("a", "1"), TxnOp::Put("b", "2"), TxnOp::Put("c", "3")});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->succeeded);
  EXPECT_TRUE(result->changed);
  EXPECT_EQ(result->revision, 1);
  EXPECT_EQ(Revision(), 1);
  for (const char* key : {"a", "b", "c"}) {
    auto kv = store_->Get(key);
    ASSERT_TRUE(kv.ok());
    EXPECT_EQ(kv->mod_revision(), 1);
    EXPECT_EQ(kv->create_revision(), 1);
  }
  result = Txn({}, {TxnOp::Put("a", "1'"), TxnOp::Delete("b"), TxnOp::Put("d", "4")});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->revision, 2);
  EXPECT_EQ(Revision(), 2);
  EXPECT_EQ(PairsAt(*store_, ""), (Pairs{{"a", "1'"}, {"c", "3"}, {"d", "4"}}));
  auto history = store_->History(10);
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), 2u);
}

TEST_F(EmbeddedPolicyStoreTest, TransactionThatChangesNothingMakesNoRevision) {
  ASSERT_TRUE(Put(*store_, "a", "1").ok());
  auto result = Txn({}, {TxnOp::Delete("missing"), TxnOp::DeletePrefix("none/")});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->succeeded);
  EXPECT_FALSE(result->changed);
  EXPECT_EQ(result->revision, 1);
  result = Txn({}, {});
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->changed);
  EXPECT_EQ(Revision(), 1);
  EXPECT_EQ(store_->History(10)->size(), 1u);
}

TEST_F(EmbeddedPolicyStoreTest, CompareAndSwap) {
  ASSERT_EQ(*Put(*store_, "policy/relay", "v1"), 1);
  ASSERT_EQ(*Put(*store_, "other", "x"), 2);

  // Creating needs the key absent.
  auto created = Txn({Compare::Absent("policy/tls")}, {TxnOp::Put("policy/tls", "t1")});
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(created->succeeded);
  EXPECT_EQ(created->revision, 3);
  auto again = Txn({Compare::Absent("policy/tls")}, {TxnOp::Put("policy/tls", "t2")});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->succeeded);
  EXPECT_EQ(again->revision, 3);

  // Swap at the revision read.
  auto swapped =
      Txn({Compare::ModRevisionIs("policy/relay", 1)}, {TxnOp::Put("policy/relay", "v2")});
  ASSERT_TRUE(swapped.ok());
  EXPECT_TRUE(swapped->succeeded);
  EXPECT_EQ(swapped->revision, 4);

  // A second writer who read revision 1 too loses, names the key, and
  // changes nothing, also not in the ops after the conflict.
  auto lost = Txn({Compare::ModRevisionIs("other", 2), Compare::ModRevisionIs("policy/relay", 1)},
                  {TxnOp::Put("policy/relay", "v2-stale"), TxnOp::Put("new", "n")});
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_FALSE(lost->succeeded);
  EXPECT_FALSE(lost->changed);
  EXPECT_EQ(lost->failed_compare, 1);
  EXPECT_EQ(lost->revision, 4);
  EXPECT_NE(lost->conflict.find("policy/relay"), std::string::npos) << lost->conflict;
  EXPECT_NE(lost->conflict.find("mod_revision is 4"), std::string::npos) << lost->conflict;
  EXPECT_TRUE(absl::IsAborted(lost->ToStatus()));
  EXPECT_EQ(Revision(), 4);
  EXPECT_EQ(store_->Get("policy/relay")->value(), "v2");
  EXPECT_TRUE(absl::IsNotFound(store_->Get("new").status()));
  EXPECT_EQ(store_->History(10)->size(), 4u);
}

TEST_F(EmbeddedPolicyStoreTest, ExpectRevisionConflict) {
  ASSERT_EQ(*Put(*store_, "a", "1"), 1);
  ASSERT_EQ(*Put(*store_, "b", "1"), 2);
  // posternctl --expect-revision 2: nothing changed since.
  auto ok = Txn({Compare::StoreRevisionIs(2)}, {TxnOp::Put("a", "2")});
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->succeeded);
  EXPECT_EQ(ok->revision, 3);
  // Someone changed something else meanwhile: refused, even for other keys.
  auto stale = Txn({Compare::StoreRevisionIs(2)}, {TxnOp::Put("c", "1")});
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(stale->failed_compare, 0);
  EXPECT_NE(stale->conflict.find("store revision is 3, expected == 2"), std::string::npos)
      << stale->conflict;
  EXPECT_EQ(Revision(), 3);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("c").status()));
}

TEST_F(EmbeddedPolicyStoreTest, OtherCompares) {
  ASSERT_EQ(*Put(*store_, "k", "hello"), 1);
  ASSERT_EQ(*Put(*store_, "k", "world"), 2);
  auto check = [&](Compare c) {
    auto r = Txn({std::move(c)}, {});
    EXPECT_TRUE(r.ok());
    return r.ok() && r->succeeded;
  };
  EXPECT_TRUE(check(Compare::ValueIs("k", "world")));
  EXPECT_FALSE(check(Compare::ValueIs("k", "hello")));
  EXPECT_FALSE(check(Compare::ValueIs("absent", "")));  // as etcd: fails on a missing key
  EXPECT_TRUE(check({Compare::Target::kVersion, Compare::Op::kEqual, "k", 2, {}}));
  EXPECT_TRUE(check({Compare::Target::kCreateRevision, Compare::Op::kEqual, "k", 1, {}}));
  EXPECT_TRUE(check({Compare::Target::kModRevision, Compare::Op::kGreater, "k", 1, {}}));
  EXPECT_FALSE(check({Compare::Target::kModRevision, Compare::Op::kLess, "k", 2, {}}));
  EXPECT_TRUE(check({Compare::Target::kModRevision, Compare::Op::kNotEqual, "k", 0, {}}));
  EXPECT_TRUE(check({Compare::Target::kStoreRevision, Compare::Op::kGreater, {}, 1, {}}));
  EXPECT_TRUE(check({Compare::Target::kVersion, Compare::Op::kEqual, "absent", 0, {}}));
}

TEST_F(EmbeddedPolicyStoreTest, DeleteAndPrefixDelete) {
  ASSERT_TRUE(Apply(*store_, {TxnOp::Put("p/a", "1"), TxnOp::Put("p/b", "2"),
                              TxnOp::Put("p/c/d", "3"), TxnOp::Put("q", "4"), TxnOp::Put("p", "5")})
                  .ok());
  ASSERT_EQ(*Apply(*store_, {TxnOp::Delete("p/a")}), 2);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("p/a").status()));
  // One revision deletes every key under the prefix, and nothing else.
  ASSERT_EQ(*Apply(*store_, {TxnOp::DeletePrefix("p/")}), 3);
  EXPECT_EQ(PairsAt(*store_, ""), (Pairs{{"p", "5"}, {"q", "4"}}));
  auto audit = store_->Audit(3, 1);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 1u);
  ASSERT_EQ((*audit)[0].changes_size(), 2);
  EXPECT_EQ((*audit)[0].changes(0).key(), "p/b");
  EXPECT_EQ((*audit)[0].changes(0).kind(), v1::CHANGE_KIND_REMOVED);
  EXPECT_EQ((*audit)[0].changes(1).key(), "p/c/d");

  // A deleted key comes back as new: create_revision and version restart.
  ASSERT_EQ(*Put(*store_, "p/a", "again"), 4);
  auto kv = store_->Get("p/a");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->create_revision(), 4);
  EXPECT_EQ(kv->version(), 1);

  // The empty prefix deletes everything.
  ASSERT_EQ(*Apply(*store_, {TxnOp::DeletePrefix("")}), 5);
  EXPECT_TRUE(PairsAt(*store_, "").empty());
}

TEST_F(EmbeddedPolicyStoreTest, MalformedTransactionsAreRefusedWhole) {
  ASSERT_TRUE(Put(*store_, "a", "1").ok());
  auto refused = [&](const TxnRequest& request) {
    auto r = store_->Txn(request);
    return absl::IsInvalidArgument(r.status());
  };
  TxnRequest twice{{}, {TxnOp::Put("x", "1"), TxnOp::Put("x", "2")}, TestAudit()};
  EXPECT_TRUE(refused(twice));
  TxnRequest put_delete{{}, {TxnOp::Put("x", "1"), TxnOp::Delete("x")}, TestAudit()};
  EXPECT_TRUE(refused(put_delete));
  TxnRequest put_under_prefix{{}, {TxnOp::DeletePrefix("x/"), TxnOp::Put("x/y", "1")}, TestAudit()};
  EXPECT_TRUE(refused(put_under_prefix));
  TxnRequest no_actor{{}, {TxnOp::Put("x", "1")}, {}};
  EXPECT_TRUE(refused(no_actor));
  TxnRequest empty_key{{}, {TxnOp::Put("", "1")}, TestAudit()};
  EXPECT_TRUE(refused(empty_key));
  TxnRequest huge{{}, {TxnOp::Put("x", std::string(2 << 20, 'v'))}, TestAudit()};
  EXPECT_TRUE(refused(huge));
  TxnRequest negative_lease{{}, {TxnOp::Put("x", "1", -1)}, TestAudit()};
  EXPECT_TRUE(refused(negative_lease));
  EXPECT_EQ(Revision(), 1);
  EXPECT_EQ(PairsAt(*store_, ""), (Pairs{{"a", "1"}}));
  // Deleting a key twice is fine.
  EXPECT_TRUE(Apply(*store_, {TxnOp::Delete("a"), TxnOp::DeletePrefix("a")}).ok());
  EXPECT_EQ(Revision(), 2);
}

TEST_F(EmbeddedPolicyStoreTest, ReadsAtOldRevisions) {
  ASSERT_EQ(*Put(*store_, "r/a", "a1"), 1);                                         // 1
  ASSERT_EQ(*Apply(*store_, {TxnOp::Put("r/b", "b1"), TxnOp::Put("s", "s1")}), 2);  // 2
  ASSERT_EQ(*Put(*store_, "r/a", "a2"), 3);                                         // 3
  ASSERT_EQ(*Apply(*store_, {TxnOp::Delete("r/b")}), 4);                            // 4
  ASSERT_EQ(*Put(*store_, "r/b", "b2"), 5);                                         // 5
  ASSERT_EQ(*Apply(*store_, {TxnOp::DeletePrefix("r/")}), 6);                       // 6
  ASSERT_EQ(*Put(*store_, "r/c", "c1"), 7);                                         // 7

  const std::vector<Pairs> expected = {
      {},
      {{"r/a", "a1"}},
      {{"r/a", "a1"}, {"r/b", "b1"}},
      {{"r/a", "a2"}, {"r/b", "b1"}},
      {{"r/a", "a2"}},
      {{"r/a", "a2"}, {"r/b", "b2"}},
      {},
      {{"r/c", "c1"}},
  };
  for (int64_t rev = 1; rev <= 7; ++rev) {
    auto result = store_->Range({KeySelector::Prefix("r/"), rev, 0});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(testing::Pairs(*result), expected[rev]) << "at revision " << rev;
    EXPECT_EQ(result->revision, 7);  // the current revision, whatever was asked
  }
  // Key metadata is as it was then.
  auto a = store_->Range({KeySelector::Key("r/a"), 2, 0});
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->kvs.size(), 1u);
  EXPECT_EQ(a->kvs[0].mod_revision(), 1);
  EXPECT_EQ(a->kvs[0].version(), 1);
  auto b = store_->Range({KeySelector::Key("r/b"), 5, 0});
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->kvs.size(), 1u);
  EXPECT_EQ(b->kvs[0].create_revision(), 5);
  EXPECT_EQ(b->kvs[0].version(), 1);
  // Keys outside the range are not affected by the undo.
  EXPECT_EQ(PairsAt(*store_, "s", 1), Pairs{});
  EXPECT_EQ(PairsAt(*store_, "s", 3), (Pairs{{"s", "s1"}}));
  // A limit at an old revision.
  auto limited = store_->Range({KeySelector::Prefix("r/"), 5, 1});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(testing::Pairs(*limited), (Pairs{{"r/a", "a2"}}));
  EXPECT_TRUE(limited->more);

  EXPECT_TRUE(absl::IsInvalidArgument(store_->Range({KeySelector::Prefix(""), 8, 0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Range({KeySelector::Prefix(""), -1, 0}).status()));
}

TEST_F(EmbeddedPolicyStoreTest, AuditRecordIsWrittenWithTheChange) {
  clock_.Advance(absl::Seconds(42));
  ASSERT_EQ(*Apply(*store_, {TxnOp::Put("a", "1"), TxnOp::Put("b", "22")}), 1);
  TxnRequest request;
  request.ops = {TxnOp::Put("a", "111"), TxnOp::Delete("b"), TxnOp::Put("c", "3")};
  request.audit = {"bob", "10.0.0.5:4431", "tighten relay policy"};
  auto result = store_->Txn(request);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->revision, 2);
  EXPECT_EQ(result->audit.revision(), 2);

  auto history = store_->History(10);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  const v1::AuditRecord& record = (*history)[0];  // newest first
  EXPECT_EQ(record.revision(), 2);
  EXPECT_EQ(record.actor(), "bob");
  EXPECT_EQ(record.source(), "10.0.0.5:4431");
  EXPECT_EQ(record.summary(), "tighten relay policy");
  EXPECT_EQ(record.cause(), v1::AUDIT_CAUSE_TXN);
  EXPECT_EQ(record.time().seconds(), 1700000042);
  ASSERT_EQ(record.changes_size(), 3);
  EXPECT_EQ(record.changes(0).key(), "a");
  EXPECT_EQ(record.changes(0).kind(), v1::CHANGE_KIND_MODIFIED);
  EXPECT_EQ(record.changes(0).prev_mod_revision(), 1);
  EXPECT_EQ(record.changes(0).prev_value_size(), 1u);
  EXPECT_EQ(record.changes(0).value_size(), 3u);
  EXPECT_EQ(record.changes(1).key(), "b");
  EXPECT_EQ(record.changes(1).kind(), v1::CHANGE_KIND_REMOVED);
  EXPECT_EQ(record.changes(1).prev_value_size(), 2u);
  EXPECT_EQ(record.changes(2).key(), "c");
  EXPECT_EQ(record.changes(2).kind(), v1::CHANGE_KIND_ADDED);
  EXPECT_EQ(record.changes(2).prev_mod_revision(), 0);
  EXPECT_EQ((*history)[1].revision(), 1);
  EXPECT_EQ((*history)[1].actor(), "alice");

  // Paging, newest first.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put(*store_, "p", std::to_string(i)).ok());
  auto page = store_->Audit(0, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].revision(), 7);
  EXPECT_EQ((*page)[2].revision(), 5);
  page = store_->Audit(4, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].revision(), 4);
  EXPECT_EQ((*page)[2].revision(), 2);
  page = store_->Audit(1, 3);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ(store_->Audit(100, 0)->size(), 7u);
}

TEST_F(EmbeddedPolicyStoreTest, CompactDropsOldRevisionsOnly) {
  for (int i = 1; i <= 6; ++i) ASSERT_EQ(*Put(*store_, "k", std::to_string(i)), i);
  ASSERT_TRUE(store_->Compact(4).ok());
  auto info = store_->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->compact_revision, 4);
  EXPECT_EQ(info->revision, 6);

  auto old = store_->Range({KeySelector::Key("k"), 3, 0});
  EXPECT_TRUE(IsCompacted(old.status())) << old.status();
  EXPECT_NE(old.status().message().find("compacted"), absl::string_view::npos);
  EXPECT_EQ(PairsAt(*store_, "k", 4), (Pairs{{"k", "4"}}));  // the compact revision itself
  EXPECT_EQ(PairsAt(*store_, "k", 5), (Pairs{{"k", "5"}}));
  EXPECT_EQ(PairsAt(*store_, "k"), (Pairs{{"k", "6"}}));
  EXPECT_TRUE(IsCompacted(store_->Compact(4)));
  EXPECT_TRUE(IsCompacted(store_->Compact(2)));
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Compact(7)));
  // Audit records stay.
  EXPECT_EQ(store_->History(100)->size(), 6u);
  // Writing goes on; compacting to the current revision leaves no log.
  ASSERT_EQ(*Put(*store_, "k", "7"), 7);
  ASSERT_TRUE(store_->Compact(7).ok());
  EXPECT_EQ(PairsAt(*store_, "k", 7), (Pairs{{"k", "7"}}));
  Reopen();
  EXPECT_EQ(store_->Info()->compact_revision, 7);
  EXPECT_TRUE(IsCompacted(store_->Range({KeySelector::Key("k"), 6, 0}).status()));
  ASSERT_EQ(*Put(*store_, "k", "8"), 8);
  EXPECT_EQ(PairsAt(*store_, "k", 7), (Pairs{{"k", "7"}}));
}

TEST_F(EmbeddedPolicyStoreTest, ReopenKeepsRevisionContentsHistoryAndAudit) {
  ASSERT_TRUE(Apply(*store_, {TxnOp::Put("a", "1"), TxnOp::Put("b", "2")}).ok());
  ASSERT_TRUE(Put(*store_, "a", "1'").ok());
  ASSERT_TRUE(Apply(*store_, {TxnOp::Delete("b")}).ok());
  ASSERT_TRUE(Put(*store_, "c", std::string(100000, 'c')).ok());
  ASSERT_TRUE(store_->Compact(1).ok());
  const auto before_all = PairsAt(*store_, "");
  const auto before_at_2 = PairsAt(*store_, "", 2);
  const auto audit_before = store_->History(100);
  ASSERT_TRUE(audit_before.ok());

  Reopen();
  auto info = store_->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->revision, 4);
  EXPECT_EQ(info->compact_revision, 1);
  EXPECT_EQ(PairsAt(*store_, ""), before_all);
  EXPECT_EQ(PairsAt(*store_, "", 2), before_at_2);
  auto audit_after = store_->History(100);
  ASSERT_TRUE(audit_after.ok());
  ASSERT_EQ(audit_after->size(), audit_before->size());
  for (size_t i = 0; i < audit_after->size(); ++i) {
    EXPECT_EQ((*audit_after)[i].SerializeAsString(), (*audit_before)[i].SerializeAsString());
  }
  auto a = store_->Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->version(), 2);
  EXPECT_EQ(a->mod_revision(), 2);
  // The next change is the next revision.
  ASSERT_EQ(*Put(*store_, "d", "4"), 5);
}

TEST_F(EmbeddedPolicyStoreTest, OpenRefusesCountersThatDisagreeWithTheLog) {
  ASSERT_TRUE(Put(*store_, "a", "1").ok());
  ASSERT_TRUE(Put(*store_, "a", "2").ok());
  store_.reset();
  {
    // Remove the newest log record behind the store's back.
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "kv", "log", "audit", "lease", "meta"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_, families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(
        db->Delete(rocksdb::WriteOptions(), handles[2], std::string("\0\0\0\0\0\0\0\2", 8)).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  auto store = EmbeddedPolicyStore::Open(dir_, TestOptions(&clock_));
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
}

}  // namespace
}  // namespace postern::control
