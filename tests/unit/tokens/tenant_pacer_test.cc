#include "service/tokens/tenant_pacer.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

TenantPacerOptions Rate(double per_second, absl::Duration max_wait = absl::Seconds(5)) {
  TenantPacerOptions o;
  o.requests_per_second = per_second;
  o.max_wait = max_wait;
  return o;
}

TEST(TenantPacerTest, OneSecondsWorthGoesAtOnceThenTheRequestWaitsForItsTurn) {
  FakeClock clock;
  TenantPacer pacer(clock, Rate(10));
  const absl::Time start = clock.Now();
  absl::Time retry_at;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok()) << i;
  // The 11th waits for its turn, a tenth of a second on.
  std::atomic<bool> sent{false};
  std::thread eleventh([&] {
    ASSERT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
    sent = true;
  });
  ASSERT_TRUE(clock.AwaitSleepers(1, absl::Seconds(10)));
  EXPECT_FALSE(sent);
  clock.Advance(absl::Milliseconds(99));
  EXPECT_TRUE(clock.AwaitSleepers(1, absl::Seconds(10)));
  EXPECT_FALSE(sent);
  clock.Advance(absl::Milliseconds(1));
  eleventh.join();
  EXPECT_TRUE(sent);
  EXPECT_EQ(clock.Now() - start, absl::Milliseconds(100));
}

TEST(TenantPacerTest, EachTenantHasItsOwnPace) {
  FakeClock clock;
  TenantPacer pacer(clock, Rate(2, absl::ZeroDuration()));
  absl::Time retry_at;
  EXPECT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
  EXPECT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
  // Tenant a's next turn is half a second away: refused (max_wait 0)...
  absl::Status third = pacer.Wait("microsoft/a", &retry_at);
  EXPECT_EQ(third.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(third.message()), HasSubstr("tenant \"microsoft/a\""));
  EXPECT_EQ(retry_at, clock.Now() + absl::Milliseconds(500));
  // ...while tenant b and another provider's tenant a go at once.
  EXPECT_TRUE(pacer.Wait("microsoft/b", &retry_at).ok());
  EXPECT_TRUE(pacer.Wait("google/a", &retry_at).ok());
  // A refused request took no turn.
  clock.Advance(absl::Milliseconds(500));
  EXPECT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
}

TEST(TenantPacerTest, ATenantWithARateOfItsOwnIsPacedAtItAndTheOthersAtTheDefault) {
  FakeClock clock;
  TenantPacerOptions options = Rate(2, absl::ZeroDuration());
  options.tenant_rates["microsoft/big"] = 5;
  options.tenant_rates["microsoft/spared"] = 0.5;
  TenantPacer pacer(clock, options);
  absl::Time retry_at;
  // One second's worth at once: five for "big", two for the rest...
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pacer.Wait("microsoft/big", &retry_at).ok()) << i;
  EXPECT_FALSE(pacer.Wait("microsoft/big", &retry_at).ok());
  EXPECT_EQ(retry_at, clock.Now() + absl::Milliseconds(200));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(pacer.Wait("microsoft/other", &retry_at).ok()) << i;
  EXPECT_FALSE(pacer.Wait("microsoft/other", &retry_at).ok());
  EXPECT_EQ(retry_at, clock.Now() + absl::Milliseconds(500));
  // ...and for a tenant slower than one a second, one request, then the
  // next after its interval (two seconds), not later.
  ASSERT_TRUE(pacer.Wait("microsoft/spared", &retry_at).ok());
  EXPECT_FALSE(pacer.Wait("microsoft/spared", &retry_at).ok());
  EXPECT_EQ(retry_at, clock.Now() + absl::Seconds(2));
  // The same tenant name under another provider is another tenant.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(pacer.Wait("google/big", &retry_at).ok()) << i;
  EXPECT_FALSE(pacer.Wait("google/big", &retry_at).ok());
  clock.Advance(absl::Seconds(2));
  EXPECT_TRUE(pacer.Wait("microsoft/spared", &retry_at).ok());
}

TEST(TenantPacerTest, AThrottledTenantGetsNoRequestUntilItsRetryAfterAndOthersGoOn) {
  FakeClock clock;
  TenantPacer pacer(clock, Rate(100));
  absl::Time retry_at;
  pacer.Throttled("microsoft/a", absl::Seconds(30));
  absl::Status refused = pacer.Wait("microsoft/a", &retry_at);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("throttling tenant \"microsoft/a\""));
  EXPECT_EQ(retry_at, clock.Now() + absl::Seconds(30));
  EXPECT_TRUE(pacer.Wait("microsoft/b", &retry_at).ok());
  clock.Advance(absl::Seconds(30));
  EXPECT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
}

TEST(TenantPacerTest, A429WithoutRetryAfterPausesForTheDefault) {
  FakeClock clock;
  TenantPacerOptions options = Rate(0);
  options.default_pause = absl::Seconds(10);
  TenantPacer pacer(clock, options);
  absl::Time retry_at;
  // Rate 0: no pacing at all...
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
  // ...but a 429 still pauses its tenant.
  pacer.Throttled("microsoft/a", absl::ZeroDuration());
  EXPECT_FALSE(pacer.Wait("microsoft/a", &retry_at).ok());
  EXPECT_EQ(retry_at, clock.Now() + absl::Seconds(10));
}

TEST(TenantPacerTest, ATenantPausedForLessThanMaxWaitIsWaitedFor) {
  FakeClock clock;
  TenantPacer pacer(clock, Rate(100));
  pacer.Throttled("microsoft/a", absl::Seconds(2));
  std::thread waiting([&] {
    absl::Time retry_at;
    EXPECT_TRUE(pacer.Wait("microsoft/a", &retry_at).ok());
  });
  ASSERT_TRUE(clock.AwaitSleepers(1, absl::Seconds(10)));
  clock.Advance(absl::Seconds(2));
  waiting.join();
}

TEST(TenantPacerTest, PacingKeys) {
  EXPECT_EQ(PacingKey("microsoft", "contoso.onmicrosoft.com", "app1"), "microsoft/contoso.onmicrosoft.com");
  EXPECT_EQ(PacingKey("google", "", "app1"), "google/app:app1");
}

}  // namespace
}  // namespace tokenbroker
