#include "service/app/vault_collector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "service/store/in_memory_credential_store.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class VaultCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    App app;
    app.id = "contoso";
    AppCredential secret;
    secret.id = "secret-2026";
    secret.kind = CredentialKind::kClientSecret;
    secret.not_after = absl::FromUnixSeconds(1'830'000'000);
    secret.sealed_secret = "sealed-never-exported";
    AppCredential cert;
    cert.id = "cert-a";
    cert.kind = CredentialKind::kCertificate;
    cert.not_after = absl::FromUnixSeconds(1'840'000'000);
    cert.failing = true;
    app.credentials = {secret, cert};
    ASSERT_TRUE(store_.CreateApp(app).ok());
    Grant alice;
    alice.id = "alice";
    alice.app = "contoso";
    alice.kind = GrantKind::kDelegated;
    alice.state = GrantState::kNeedsReconsent;
    alice.consent_time = absl::FromUnixSeconds(1'790'000'000);
    alice.refresh_token_last_used_time = absl::FromUnixSeconds(1'795'000'000);
    ASSERT_TRUE(store_.CreateGrant(alice).ok());
    Grant robot;
    robot.id = "robot";
    robot.app = "contoso";
    robot.last_refresh_time = absl::FromUnixSeconds(1'796'000'000);
    ASSERT_TRUE(store_.CreateGrant(robot).ok());
  }
  std::string Scrape(bool per_grant) {
    return prometheus::TextSerializer().Serialize(VaultCollector(store_, per_grant).Collect());
  }
  InMemoryCredentialStore store_;
};

TEST_F(VaultCollectorTest, CredentialExpiryAndFailureForAlerts) {
  const std::string text = Scrape(true);
  EXPECT_THAT(text, HasSubstr("tokenbroker_store_up 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_app_credential_expiry_timestamp_seconds{app=\"contoso\",credential=\"secret-"
                              "2026\",kind=\"client_secret\"} 1830000000"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_app_credential_expiry_timestamp_seconds{app=\"contoso\",credential=\"cert-"
                              "a\",kind=\"certificate\"} 1840000000"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_app_credential_failing{app=\"contoso\",credential=\"cert-a\"} 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_app_credential_failing{app=\"contoso\",credential=\"secret-2026\"} 0"));
  EXPECT_THAT(text, Not(HasSubstr("sealed-never-exported")));
}

TEST_F(VaultCollectorTest, GrantsByStateAlwaysHaveEveryState) {
  const std::string text = Scrape(true);
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"active\"} 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"needs_reconsent\"} 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"disabled\"} 0"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"pending_consent\"} 0"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"app_credential_invalid\"} 0"));
}

TEST_F(VaultCollectorTest, PerGrantSeriesCanBeSwitchedOff) {
  std::string text = Scrape(true);
  EXPECT_THAT(text, HasSubstr("tokenbroker_grant_refresh_token_last_used_timestamp_seconds{app=\"contoso\",grant="
                              "\"alice\"} 1795000000"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grant_last_refresh_timestamp_seconds{app=\"contoso\",grant=\"robot\"} "
                              "1796000000"));
  text = Scrape(false);
  EXPECT_THAT(text, Not(HasSubstr("tokenbroker_grant_")));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grants{state=\"active\"} 1"));
}

TEST(AccessTokenExpiryCollectorTest, OneSeriesPerCachedToken) {
  AccessTokenExpiryCollector collector([] {
    return std::map<std::string, absl::Time>{{"alice", absl::FromUnixSeconds(1'800'003'600)},
                                             {"robot", absl::FromUnixSeconds(1'800'000'600)}};
  });
  const std::string text = prometheus::TextSerializer().Serialize(collector.Collect());
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "tokenbroker_grant_access_token_expiry_timestamp_seconds{grant=\"alice\"} 1800003600"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "tokenbroker_grant_access_token_expiry_timestamp_seconds{grant=\"robot\"} 1800000600"));
}

}  // namespace
}  // namespace tokenbroker
