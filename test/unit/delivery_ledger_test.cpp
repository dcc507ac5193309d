#include "kbus/kafka/delivery_ledger.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "kbus/testing/matchers.hpp"

namespace {

using kbus::kafka::DeliveryLedger;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;

TEST(DeliveryLedger, EncodesRangesRelativeToTheCommittedOffset) {
  DeliveryLedger l;
  l.clean = false;
  l.deliveries = {{1000, 2}, {1001, 1}, {1002, 1}, {1003, 1}, {1005, 1}, {999, 7}};
  EXPECT_EQ(l.Encode(1000), "v1;s=D;a=0:2,1-3:1,5:1") << "offsets before the base are finished";
  auto back = DeliveryLedger::Decode(l.Encode(1000), 1000);
  ASSERT_THAT(back, IsOk());
  EXPECT_FALSE(back->clean);
  EXPECT_EQ(back->deliveries, (std::map<std::int64_t, int>{{1000, 2}, {1001, 1}, {1002, 1}, {1003, 1}, {1005, 1}}));
}

TEST(DeliveryLedger, ACleanEmptyLedgerIsNoMetadataAtAll) {
  EXPECT_EQ(DeliveryLedger{}.Encode(5), "");
  auto back = DeliveryLedger::Decode("", 5);
  ASSERT_THAT(back, IsOk());
  EXPECT_TRUE(back->clean);
  EXPECT_TRUE(back->deliveries.empty());
  EXPECT_EQ((DeliveryLedger{.clean = false, .deliveries = {}}).Encode(5), "v1;s=D;a=");
}

TEST(DeliveryLedger, AWaveOfAThousandFreshRecordsIsOneShortRun) {
  DeliveryLedger l;
  l.clean = false;
  for (int i = 0; i < 1000; ++i) l.deliveries[50 + i] = 1;
  EXPECT_EQ(l.Encode(50), "v1;s=D;a=0-999:1");
}

TEST(DeliveryLedger, StaysWithinItsByteBudgetKeepingTheLowestOffsets) {
  DeliveryLedger l;
  l.clean = false;
  for (int i = 0; i < 2000; ++i) l.deliveries[i] = 1 + i % 2;  // no two neighbours share a count
  std::int64_t covered = -5;
  const std::string text = l.Encode(0, kbus::kafka::kMaxLedgerBytes, &covered);
  EXPECT_LE(text.size(), kbus::kafka::kMaxLedgerBytes);
  EXPECT_GT(covered, 300);
  EXPECT_LT(covered, 1999);
  auto back = DeliveryLedger::Decode(text, 0);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->deliveries.size(), static_cast<std::size_t>(covered + 1));
  EXPECT_EQ(back->deliveries.rbegin()->first, covered);
  EXPECT_EQ(back->deliveries.at(covered), 1 + covered % 2);
  std::int64_t none = 0;
  EXPECT_EQ(l.Encode(0, 12, &none), "v1;s=D;a=0:1");
  EXPECT_EQ(l.Encode(0, 11, &none), "v1;s=D;a=");
  EXPECT_EQ(none, -1);
}

TEST(DeliveryLedger, EncodingSortedCountsWritesWhatTheMapEncodingWrites) {
  DeliveryLedger l;
  l.clean = false;
  std::vector<std::pair<std::int64_t, int>> sorted;
  for (std::int64_t i = 95; i < 1800; ++i) {
    const int count = i < 400 ? 1 : 1 + static_cast<int>(i % 3);
    l.deliveries[i] = count;
    sorted.emplace_back(i, count);
  }
  for (std::size_t budget : {std::size_t{12}, std::size_t{100}, kbus::kafka::kMaxLedgerBytes}) {
    std::int64_t a = 0, b = 0;
    EXPECT_EQ(DeliveryLedger::EncodeSorted(false, sorted, 100, budget, &b), l.Encode(100, budget, &a));
    EXPECT_EQ(a, b);
  }
  EXPECT_EQ(DeliveryLedger::EncodeSorted(true, {}, 7), "");
}

TEST(DeliveryLedger, RefusesWhatItDidNotWrite) {
  using kbus::ErrorCode;
  using ::testing::HasSubstr;
  EXPECT_THAT(DeliveryLedger::Decode("v2;s=D;a=0:1", 0), ErrorIs(ErrorCode::kDecode, HasSubstr("unknown version")));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=X;a=0:1", 0), ErrorIs(ErrorCode::kDecode, HasSubstr("s=C or s=D")));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=D;a=0", 0), ErrorIs(ErrorCode::kDecode));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=D;a=3-1:1", 0), ErrorIs(ErrorCode::kDecode));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=D;a=0:0", 0), ErrorIs(ErrorCode::kDecode));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=D;a=-1:1", 0), ErrorIs(ErrorCode::kDecode));
  EXPECT_THAT(DeliveryLedger::Decode("v1;s=D;a=0-99999999:1", 0), ErrorIs(ErrorCode::kDecode));
  EXPECT_THAT(DeliveryLedger::Decode("some other tool's metadata", 0), ErrorIs(ErrorCode::kDecode));
}

}  // namespace
