#include "service/common/clock.h"

#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.Advance(absl::Seconds(90));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1090));
  clock.Set(absl::FromUnixSeconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(5));
}

TEST(SystemClockTest, IsNearTheWallClock) {
  EXPECT_LT(absl::AbsDuration(SystemClock::Get().Now() - absl::Now()), absl::Seconds(5));
}

}  // namespace
}  // namespace tokenbroker
