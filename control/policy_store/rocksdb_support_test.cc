#include "control/policy_store/rocksdb_support.h"

#include <string>

#include "gtest/gtest.h"

namespace postern::control::policy_store_internal {
namespace {

TEST(RocksdbSupportTest, NumberKeysSortNumerically) {
  EXPECT_EQ(NumberKey(1), std::string("\0\0\0\0\0\0\0\1", 8));
  EXPECT_LT(NumberKey(255), NumberKey(256));
  EXPECT_LT(NumberKey(9), NumberKey(10));
  EXPECT_EQ(ParseNumberKey(NumberKey(123456789012)), 123456789012);
  EXPECT_FALSE(ParseNumberKey("short").has_value());
}

TEST(RocksdbSupportTest, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("a/"), "a0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_FALSE(PrefixEnd("").has_value());
  EXPECT_FALSE(PrefixEnd(std::string("\xff\xff", 2)).has_value());
}

TEST(RocksdbSupportTest, StatusMapping) {
  EXPECT_TRUE(absl::IsResourceExhausted(FromRocks(rocksdb::Status::NoSpace("x"), "w")));
  EXPECT_TRUE(absl::IsUnavailable(FromRocks(rocksdb::Status::IOError("x"), "w")));
  EXPECT_TRUE(absl::IsDataLoss(FromRocks(rocksdb::Status::Corruption("x"), "w")));
  EXPECT_TRUE(FromRocks(rocksdb::Status::OK(), "w").ok());
}

}  // namespace
}  // namespace postern::control::policy_store_internal
