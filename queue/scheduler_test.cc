#include "queue/scheduler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::queue {
namespace {

std::vector<std::string> Ids(const std::vector<ScheduleEntry>& entries) {
  std::vector<std::string> ids;
  for (const auto& e : entries) ids.push_back(e.queue_id);
  return ids;
}

TEST(SchedulerTest, NothingIsDueBeforeTheFirstScanLoadsTheWindow) {
  Scheduler s;
  s.Schedule(100, "A");  // window not loaded yet: left to the index scan
  EXPECT_TRUE(s.TakeDue(1000, 10).empty());
  int64_t from = -1, to = -1;
  ASSERT_TRUE(s.BeginScan(1000, &from, &to));
  EXPECT_EQ(from, 0);
  EXPECT_EQ(to, 1000 + SchedulerOptions().horizon_ms);
  EXPECT_FALSE(s.BeginScan(1000, &from, &to)) << "one scan at a time";
  s.ScanDone({{100, "A"}, {900, "B"}, {5000, "C"}}, true);
  EXPECT_EQ(Ids(s.TakeDue(1000, 10)), (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(s.NextDueMs(), 5000);
  EXPECT_EQ(Ids(s.TakeDue(5000, 10)), std::vector<std::string>{"C"});
}

TEST(SchedulerTest, InWindowSchedulesGoStraightToMemoryAndAreNotDuplicatedByTheScan) {
  Scheduler s;
  int64_t from, to;
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  // Decided while the scan is in flight: in memory at once.
  s.Schedule(50, "A");
  // The scan (behind the barrier) sees A's durable key too.
  s.ScanDone({{50, "A"}}, true);
  EXPECT_EQ(s.queued(), 1u);
  EXPECT_EQ(Ids(s.TakeDue(60, 10)), std::vector<std::string>{"A"});
  EXPECT_TRUE(s.TakeDue(60, 10).empty());
}

TEST(SchedulerTest, InFlightMessagesAreNotHandedOutTwice) {
  Scheduler s;
  int64_t from, to;
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  s.ScanDone({{10, "A"}}, true);
  ASSERT_EQ(s.TakeDue(10, 10).size(), 1u);
  EXPECT_TRUE(s.in_flight("A"));
  // Its old key is still in the index until the result is durable.
  s.Schedule(10, "A");
  EXPECT_TRUE(s.TakeDue(100, 10).empty());
  s.Finished("A");
  s.Schedule(70, "A");  // deferred
  EXPECT_TRUE(s.TakeDue(69, 10).empty());
  EXPECT_EQ(Ids(s.TakeDue(70, 10)), std::vector<std::string>{"A"});
}

TEST(SchedulerTest, RescheduleMakesTheOldEntryStale) {
  Scheduler s;
  int64_t from, to;
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  s.ScanDone({{200, "A"}}, true);
  s.Schedule(20, "A");  // retry now
  EXPECT_EQ(Ids(s.TakeDue(20, 10)), std::vector<std::string>{"A"});
  s.Finished("A");
  EXPECT_TRUE(s.TakeDue(1000, 10).empty()) << "the entry at 200 was stale";
  s.Schedule(300, "B");
  s.Cancel("B");  // held
  EXPECT_TRUE(s.TakeDue(1000, 10).empty());
}

TEST(SchedulerTest, BeyondTheWindowWaitsForTheScanThatReachesIt) {
  SchedulerOptions options;
  options.horizon_ms = 1000;
  options.rescan_ms = 100;
  Scheduler s(options);
  int64_t from, to;
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  s.ScanDone({}, true);
  s.Schedule(5000, "A");  // far ahead: only the index has it
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_FALSE(s.BeginScan(500, &from, &to)) << "window still reaches far enough";
  ASSERT_TRUE(s.BeginScan(950, &from, &to));
  EXPECT_EQ(from, 1000);
  EXPECT_EQ(to, 1950);
  s.ScanDone({}, true);
  ASSERT_TRUE(s.BeginScan(4500, &from, &to));
  EXPECT_EQ(from, 1950);
  s.ScanDone({{5000, "A"}}, true);
  EXPECT_EQ(Ids(s.TakeDue(5000, 10)), std::vector<std::string>{"A"});
}

TEST(SchedulerTest, TruncatedOrFailedScansAreResumed) {
  SchedulerOptions options;
  options.scan_limit = 2;
  Scheduler s(options);
  int64_t from, to;
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  s.ScanDone({{10, "A"}, {20, "B"}}, true);  // limit reached
  EXPECT_EQ(s.loaded_until(), 20);
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  EXPECT_EQ(from, 20);
  s.ScanDone({{20, "B"}, {30, "C"}}, true);  // B again: ignored
  EXPECT_EQ(s.queued(), 3u);
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  const int64_t failed_from = from;
  s.ScanDone({}, false);
  ASSERT_TRUE(s.BeginScan(0, &from, &to));
  EXPECT_EQ(from, failed_from);
}

}  // namespace
}  // namespace postern::queue
