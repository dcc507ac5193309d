// Slots: a fixed number of places for work that outlives its handler. Taken up to capacity,
// given back by a hold's destruction or release (once), the listener told on every give-back,
// and a handler keeps its delivery's slot with Context::KeepSlot().

#include "kbus/slots.hpp"

#include <gtest/gtest.h>

#include <stdexcept>


namespace {

TEST(Slots, AreTakenUpToCapacityAndGivenBackByTheHold) {
  auto slots = std::make_shared<kbus::Slots>(2);
  int given = 0;
  slots->SetListener([&] { ++given; });
  ASSERT_TRUE(slots->TryTake());
  kbus::SlotHold a(slots);
  ASSERT_TRUE(slots->TryTake());
  kbus::SlotHold b(slots);
  EXPECT_FALSE(slots->TryTake()) << "both taken";
  EXPECT_EQ(slots->in_use(), 2);

  kbus::SlotHold moved = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_TRUE(moved);
  EXPECT_EQ(slots->in_use(), 2) << "a move gives nothing back";
  moved.Release();
  moved.Release();
  EXPECT_EQ(slots->in_use(), 1) << "released once";
  EXPECT_EQ(given, 1);
  { kbus::SlotHold gone = std::move(b); }
  EXPECT_EQ(slots->in_use(), 0);
  EXPECT_EQ(given, 2);
  EXPECT_TRUE(slots->TryTake());
}

TEST(Slots, RefuseACapacityBelowOne) {
  EXPECT_THROW(kbus::Slots(0), std::invalid_argument);
}

}  // namespace
