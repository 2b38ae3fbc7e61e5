#include "service/tokens/token_manager.h"

#include "service/tokens/refresh_scheduler.h"
#include "service/tokens/replica_membership.h"

#include <atomic>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/sasl.h"
#include "service/idp/microsoft_provider.h"
#include "service/store/in_memory_credential_store.h"
#include "tests/support/credentials.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClientId[] = "11111111-2222-3333-4444-555555555555";

class TokenManagerTest : public ::testing::Test {
 protected:
  TokenManagerTest()
      : clock_(absl::Now()),
        sealer_(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))),
        vault_(store_, sealer_, clock_),
        idp_(clock_),
        microsoft_(idp_, clock_),
        logger_(LogLevel::kInfo, [this](absl::string_view line) { log_ += std::string(line); }, clock_),
        tokens_(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Options()) {}

  TokenManagerOptions Options() {
    TokenManagerOptions o;
    // Tests that make many provider requests at one fake instant would wait
    // for a clock that does not move: pacing is tested on its own
    // (tenant_pacer_test) and a 429 still pauses its tenant.
    o.pacing.requests_per_second = 0;
    o.on_token = [this](absl::string_view outcome) {
      absl::MutexLock lock(&mu_);
      ++outcomes_[std::string(outcome)];
    };
    return o;
  }

  CredentialInput SecretInput(const std::string& id, const std::string& value) {
    return testing::ClientSecretCredential(id, value, clock_.Now() + absl::Hours(24 * 100));
  }

  void CreateApp(std::vector<CredentialInput> credentials, AssertionAlgorithm alg = AssertionAlgorithm::kPs256) {
    App app;
    app.id = "contoso";
    app.tenant = kTenant;
    app.client_id = kClientId;
    app.assertion_algorithm = alg;
    ASSERT_TRUE(vault_.CreateApp(app, std::move(credentials)).ok());
  }

  // An app whose one client secret the provider accepts.
  void CreateAppWithSecret() {
    idp_.RegisterApp(kTenant, kClientId, "the-secret");
    std::vector<CredentialInput> creds;
    creds.push_back(SecretInput("s1", "the-secret"));
    CreateApp(std::move(creds));
  }

  void AppOnlyGrant(const std::string& id = "robot") {
    Grant g;
    g.id = id;
    g.app = "contoso";
    g.mailbox = "robot@contoso.com";
    g.kind = GrantKind::kAppOnly;
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }

  void DelegatedGrant(const std::string& refresh_token) {
    Grant g;
    g.id = "alice";
    g.app = "contoso";
    g.mailbox = "alice@contoso.com";
    ASSERT_TRUE(vault_.ImportGrant(g, Secret::CopyFrom(refresh_token)).ok());
  }

  int Outcome(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return outcomes_[name];
  }

  FakeClock clock_;
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  testing::FakeMicrosoft idp_;
  MicrosoftProvider microsoft_;
  std::string log_;
  Logger logger_;
  TokenManager tokens_;
  absl::Mutex mu_;
  std::map<std::string, int> outcomes_;
  testing::TempDir dir_;
};

TEST_F(TokenManagerTest, OneRefusedTokenCostsOneRefreshHoweverManyCallsMetIt) {
  CreateAppWithSecret();
  AppOnlyGrant();
  absl::StatusOr<AccessToken> first = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(idp_.requests(), 1);
  // Three sessions were refused with the same token.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tokens_.RefreshRefused("robot", first->token).ok());
  EXPECT_EQ(idp_.requests(), 2);
  absl::StatusOr<AccessToken> second = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(idp_.requests(), 2);
  // The new token refused too: refreshed again, once.
  ASSERT_TRUE(tokens_.RefreshRefused("robot", second->token).ok());
  ASSERT_TRUE(tokens_.RefreshRefused("robot", second->token).ok());
  EXPECT_EQ(idp_.requests(), 3);
}

TEST_F(TokenManagerTest, CallersAndTheSchedulerShareOneLimitOnProviderRequests) {
  CreateAppWithSecret();
  for (int i = 0; i < 6; ++i) AppOnlyGrant(absl::StrCat("robot-", i));
  TokenManagerOptions options = Options();
  options.max_concurrent_refreshes = 2;
  TokenManager limited(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, options);
  idp_.Hold(true);
  std::vector<std::thread> callers;
  std::atomic<int> served{0};
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&, i] {
      if (limited.GetAccessToken(absl::StrCat("robot-", i), absl::Minutes(1)).ok()) ++served;
    });
  }
  // The background path: the scheduler's refreshes go through RefreshNow.
  for (int i = 3; i < 6; ++i) {
    callers.emplace_back([&, i] {
      if (limited.RefreshNow(absl::StrCat("robot-", i)).ok()) ++served;
    });
  }
  ASSERT_TRUE(idp_.WaitForHeldRequests(2, absl::Seconds(30)));
  // Four wait for the limit, and so exactly two requests reach the provider.
  ASSERT_TRUE(limited.AwaitRefreshesWaitingForTheLimit(4, absl::Seconds(30)));
  EXPECT_FALSE(idp_.WaitForHeldRequests(3, absl::ZeroDuration()));
  idp_.Hold(false);
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(served, 6);
  EXPECT_EQ(limited.provider_requests_peak(), 2);
  EXPECT_EQ(idp_.requests(), 6);
}

TEST_F(TokenManagerTest, ACredentialThatNoLongerOpensIsMarkedFailingAndTheNextOneServes) {
  idp_.RegisterApp(kTenant, kClientId, "the-secret");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("damaged", "the-secret"));
  creds.push_back(SecretInput("good", "the-secret"));
  CreateApp(std::move(creds));
  AppOnlyGrant();
  App app = *store_.GetApp("contoso");
  std::string& sealed = app.credentials[0].sealed_secret;
  sealed[sealed.size() / 2] ^= 0x5A;  // one flipped byte: the value no longer opens
  ASSERT_TRUE(store_.UpdateApp(app).ok());

  absl::StatusOr<AccessToken> token = tokens_.GetAccessToken("robot", absl::Minutes(1));
  ASSERT_TRUE(token.ok()) << token.status();
  const App after = *store_.GetApp("contoso");
  EXPECT_TRUE(after.credentials[0].failing);
  EXPECT_EQ(after.credentials[0].last_error.oauth_error, "sealed_value_unreadable");
  EXPECT_THAT(after.credentials[0].last_error.message, HasSubstr("app/contoso/credential/damaged"));
  EXPECT_FALSE(after.credentials[1].failing);
  EXPECT_THAT(log_, HasSubstr("an app credential does not open"));
  EXPECT_THAT(log_, ::testing::Not(HasSubstr("the-secret")));

  // With no credential that opens, the error says which record is damaged.
  app = *store_.GetApp("contoso");
  std::string& second = app.credentials[1].sealed_secret;
  second[second.size() / 2] ^= 0x5A;
  ASSERT_TRUE(store_.UpdateApp(app).ok());
  TokenManager fresh(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Options());  // nothing cached
  absl::Status refused = fresh.GetAccessToken("robot", absl::Minutes(1)).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kDataLoss) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("app/contoso/credential/good"));
}

TEST_F(TokenManagerTest, AppOnlyWithAClientSecretThenServedFromTheCache) {
  CreateAppWithSecret();
  AppOnlyGrant();
  absl::StatusOr<AccessToken> t = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(idp_.UserOfAccessToken(std::string(t->token.Reveal())), std::string("app:") + kClientId);
  EXPECT_EQ(t->mailbox, "robot@contoso.com");
  EXPECT_EQ(t->token_type, "Bearer");
  EXPECT_EQ(t->expire_time, clock_.Now() + absl::Seconds(3599));
  EXPECT_THAT(t->scopes, ::testing::ElementsAre("https://outlook.office365.com/.default"));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 1);
  EXPECT_EQ(Outcome("cache_hit"), 5);
  EXPECT_NE(vault_.GetGrant("robot")->last_refresh_time, absl::InfinitePast());
}

TEST_F(TokenManagerTest, UseCachedTokenServesCallersOfOneGrantSideBySide) {
  CreateAppWithSecret();
  AppOnlyGrant();
  absl::StatusOr<AccessToken> t = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  // Nothing cached yet for another grant, and not valid long enough here.
  EXPECT_FALSE(tokens_.UseCachedToken("nobody", absl::Minutes(5), [](const AccessToken&) { FAIL(); }));
  EXPECT_FALSE(tokens_.UseCachedToken("robot", absl::Hours(2), [](const AccessToken&) { FAIL(); }));
  // While one caller builds its response from the token, another caller of
  // the same grant, on another thread, is served (it does not queue).
  std::atomic<bool> inner_served{false};
  absl::Notification inner_done;
  std::thread inner;
  std::string outer_token;
  ASSERT_TRUE(tokens_.UseCachedToken("robot", absl::Minutes(5), [&](const AccessToken& outer) {
    outer_token = std::string(outer.token.Reveal());
    inner = std::thread([&] {
      inner_served = tokens_.UseCachedToken("robot", absl::Minutes(5), [&](const AccessToken& token) {
        EXPECT_EQ(token.token.Reveal(), outer_token);
        EXPECT_EQ(token.mailbox, "robot@contoso.com");
      });
      inner_done.Notify();
    });
    EXPECT_TRUE(inner_done.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "the second caller waited for the first";
  }));
  inner.join();
  EXPECT_TRUE(inner_served);
  EXPECT_EQ(outer_token, t->token.Reveal());
  EXPECT_EQ(Outcome("cache_hit"), 2);
  EXPECT_EQ(idp_.requests(), 1);
}

TEST_F(TokenManagerTest, MinValidForTriggersARefreshAheadOfExpiry) {
  CreateAppWithSecret();
  AppOnlyGrant();
  ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  clock_.Advance(absl::Seconds(3599) - absl::Minutes(4));  // 4 minutes left
  ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(3)).ok());
  EXPECT_EQ(idp_.requests(), 1);
  ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(TokenManagerTest, CertificateAssertionsPs256AndRs256AreAccepted) {
  for (AssertionAlgorithm alg : {AssertionAlgorithm::kPs256, AssertionAlgorithm::kRs256}) {
    SCOPED_TRACE(alg == AssertionAlgorithm::kPs256 ? "PS256" : "RS256");
    testing::CertificateFiles files = testing::MakeSelfSignedCertificate(dir_, "app-cert");
    std::vector<CredentialInput> creds;
    creds.push_back(testing::CertificateCredential("cert", files));
    (void)vault_.DeleteApp("contoso", true);
    CreateApp(std::move(creds), alg);
    const AppCredential registered = vault_.GetApp("contoso")->credentials[0];
    idp_.RegisterApp(kTenant, kClientId, "", registered.certificate_pem, registered.thumbprint_sha256,
                     registered.thumbprint_sha1);
    AppOnlyGrant();
    absl::StatusOr<AccessToken> t = tokens_.GetAccessToken("robot", absl::Minutes(5));
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_THAT(idp_.UserOfAccessToken(std::string(t->token.Reveal())), HasSubstr("app:"));
    tokens_.Invalidate("robot");
  }
}

TEST_F(TokenManagerTest, ARejectedCredentialIsMarkedAndTheNextOneIsTried) {
  idp_.RegisterApp(kTenant, kClientId, "right");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("old", "wrong"));
  creds.push_back(SecretInput("new", "right"));
  CreateApp(std::move(creds));
  AppOnlyGrant();
  ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 2);
  App app = *vault_.GetApp("contoso");
  EXPECT_TRUE(app.credentials[0].failing);
  EXPECT_EQ(app.credentials[0].last_error.provider_code, 7000215);
  EXPECT_FALSE(app.credentials[1].failing);
  // The working credential goes first from now on.
  tokens_.Invalidate("robot");
  ASSERT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 3);
}

TEST_F(TokenManagerTest, EveryCredentialRejectedIsAFailedPreconditionSayingWhatToDo) {
  idp_.RegisterApp(kTenant, kClientId, "right");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("only", "Wr0ng-s3cret-VALUE"));
  CreateApp(std::move(creds));
  AppOnlyGrant();
  absl::Status s = tokens_.GetAccessToken("robot", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("every credential of app \"contoso\" was rejected"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("AADSTS7000215"));
  EXPECT_EQ(vault_.GetGrant("robot")->state, GrantState::kAppCredentialInvalid);
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("Wr0ng-s3cret-VALUE")));
  EXPECT_THAT(log_, ::testing::Not(HasSubstr("Wr0ng-s3cret-VALUE")));
}

TEST_F(TokenManagerTest, ARotatedRefreshTokenIsStoredBeforeTheAccessTokenIsHandedOut) {
  idp_.RegisterApp(kTenant, kClientId, "the-secret");
  idp_.AddRefreshToken("0.rt-imported", "alice");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("s1", "the-secret"));
  CreateApp(std::move(creds));
  DelegatedGrant("0.rt-imported");
  absl::StatusOr<AccessToken> t = tokens_.GetAccessToken("alice", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(idp_.UserOfAccessToken(std::string(t->token.Reveal())), "alice");
  Grant g = *vault_.GetGrant("alice");
  EXPECT_EQ(vault_.OpenRefreshToken(g)->Reveal(), idp_.LatestRefreshToken("alice"));
  EXPECT_NE(idp_.LatestRefreshToken("alice"), "0.rt-imported");
  EXPECT_EQ(g.refresh_token_last_used_time, clock_.Now());
}

TEST_F(TokenManagerTest, AThousandConcurrentCallersCauseOneProviderRequest) {
  CreateAppWithSecret();
  AppOnlyGrant();
  constexpr int kCallers = 1000;
  std::vector<std::string> got(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<AccessToken> t = tokens_.GetAccessToken("robot", absl::Minutes(5));
      if (t.ok()) got[i] = std::string(t->token.Reveal());
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(idp_.requests(), 1);
  for (const std::string& token : got) EXPECT_EQ(token, got[0]);
  EXPECT_FALSE(got[0].empty());
}

TEST_F(TokenManagerTest, InvalidGrantMovesTheGrantToNeedsReconsent) {
  idp_.RegisterApp(kTenant, kClientId, "the-secret");
  idp_.AddRefreshToken("0.rt", "alice");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("s1", "the-secret"));
  CreateApp(std::move(creds));
  DelegatedGrant("0.rt");
  idp_.QueueFailure(400, "invalid_grant", 700082);
  absl::Status s = tokens_.GetAccessToken("alice", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("needs consent again"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("AADSTS700082"));
  Grant g = *vault_.GetGrant("alice");
  EXPECT_EQ(g.state, GrantState::kNeedsReconsent);
  EXPECT_EQ(g.last_error.provider_code, 700082);
  EXPECT_EQ(vault_.OpenRefreshToken(g)->Reveal(), "0.rt");  // nothing deleted
  // No more provider requests for it.
  EXPECT_EQ(tokens_.GetAccessToken("alice", absl::Minutes(5)).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(idp_.requests(), 1);
}

TEST_F(TokenManagerTest, AnOutageKeepsServingTheCachedTokenUntilItTrulyExpires) {
  CreateAppWithSecret();
  AppOnlyGrant();
  absl::StatusOr<AccessToken> first = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(first.ok());
  idp_.SetDown(true);
  clock_.Advance(absl::Seconds(3599) - absl::Minutes(2));
  absl::StatusOr<AccessToken> stale = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_EQ(stale->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(Outcome("stale"), 1);
  clock_.Advance(absl::Minutes(3));  // truly expired
  absl::Status down = tokens_.GetAccessToken("robot", absl::Minutes(5)).status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(down.message()), HasSubstr("could not be reached"));
  const int requests = idp_.requests();
  EXPECT_EQ(tokens_.GetAccessToken("robot", absl::Minutes(5)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(idp_.requests(), requests) << "no request during the back-off";
  idp_.SetDown(false);
  clock_.Advance(absl::Minutes(10));
  EXPECT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
}

TEST_F(TokenManagerTest, AfterALongOutageAWaitingCallerProbesInsteadOfWaitingOutTheBackOff) {
  CreateAppWithSecret();
  AppOnlyGrant();
  idp_.SetDown(true);
  for (int i = 0; i < 10; ++i) {  // the back-off doubles up to its 5 minutes
    ASSERT_FALSE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
    clock_.Advance(absl::Minutes(6));
  }
  ASSERT_FALSE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());  // a 4-6 minute back-off begins
  idp_.SetDown(false);
  const int requests = idp_.requests();
  clock_.Advance(absl::Seconds(5));
  // Too soon after the last request: callers get the error, the provider no request.
  EXPECT_EQ(tokens_.GetAccessToken("robot", absl::Minutes(5)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(idp_.requests(), requests);
  clock_.Advance(absl::Seconds(6));
  // A probe, minutes before the back-off ends, and the provider is back.
  absl::StatusOr<AccessToken> token = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(idp_.requests(), requests + 1);
}

TEST_F(TokenManagerTest, RetryAfterIsHonoured) {
  CreateAppWithSecret();
  AppOnlyGrant();
  idp_.QueueFailure(429, "throttled", 0, /*retry_after_seconds=*/3);
  absl::Status s = tokens_.GetAccessToken("robot", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("throttl"));
  clock_.Advance(absl::Milliseconds(2900));
  EXPECT_EQ(tokens_.GetAccessToken("robot", absl::Minutes(5)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(idp_.requests(), 1);
  clock_.Advance(absl::Milliseconds(200));
  EXPECT_TRUE(tokens_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(TokenManagerTest, A429FromOneTenantHoldsBackThatTenantOnly) {
  // Two apps in two tenants, two grants in the first.
  for (const std::string tenant : {"fabrikam.onmicrosoft.com", "contoso.onmicrosoft.com"}) {
    idp_.RegisterApp(tenant, kClientId, "the-secret");
    App app;
    app.id = tenant.substr(0, tenant.find('.'));
    app.tenant = tenant;
    app.client_id = kClientId;
    std::vector<CredentialInput> creds;
    creds.push_back(SecretInput("s1", "the-secret"));
    ASSERT_TRUE(vault_.CreateApp(app, std::move(creds)).ok());
  }
  for (const std::string id : {"f1", "f2", "c1"}) {
    Grant g;
    g.id = id;
    g.app = id[0] == 'f' ? "fabrikam" : "contoso";
    g.mailbox = id + "@example.com";
    g.kind = GrantKind::kAppOnly;
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }
  idp_.ThrottleTenant("fabrikam.onmicrosoft.com", 30);
  absl::Status first = tokens_.GetAccessToken("f1", absl::Minutes(5)).status();
  EXPECT_EQ(first.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(idp_.TokenRequestTimes("fabrikam.onmicrosoft.com").size(), 1u);
  // Another grant of the throttled tenant is not sent to the provider...
  absl::Status second = tokens_.GetAccessToken("f2", absl::Minutes(5)).status();
  EXPECT_EQ(second.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.message()), HasSubstr("throttling tenant \"microsoft/fabrikam.onmicrosoft.com\""));
  EXPECT_THAT(std::string(second.message()), HasSubstr("retry in 30s"));
  EXPECT_EQ(idp_.TokenRequestTimes("fabrikam.onmicrosoft.com").size(), 1u);
  // ...while the other tenant's grants get tokens.
  EXPECT_TRUE(tokens_.GetAccessToken("c1", absl::Minutes(5)).ok());
  // After the Retry-After the tenant is asked again.
  idp_.ThrottleTenant("fabrikam.onmicrosoft.com", 0);
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(tokens_.GetAccessToken("f2", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.TokenRequestTimes("fabrikam.onmicrosoft.com").size(), 2u);
}

TEST_F(TokenManagerTest, DisabledAndUnknownGrants) {
  CreateAppWithSecret();
  AppOnlyGrant();
  ASSERT_TRUE(vault_.SetGrantEnabled("robot", false).ok());
  absl::Status s = tokens_.GetAccessToken("robot", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tokenbrokerctl grant enable robot"));
  EXPECT_EQ(tokens_.GetAccessToken("nobody", absl::Minutes(5)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(idp_.requests(), 0);
}

TEST_F(TokenManagerTest, TheSchedulerRefreshesAheadOfExpiryWithinTheJitterWindow) {
  CreateAppWithSecret();
  AppOnlyGrant();
  const absl::Time t0 = clock_.Now();
  absl::StatusOr<AccessToken> first = tokens_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(first.ok());
  RefreshScheduler scheduler(tokens_, vault_, clock_, logger_, {});
  // Lifetime 3599 s: slack = max(5 min, 10%) = 359.9 s, jitter up to half of it.
  clock_.Set(t0 + absl::Seconds(3599 - 540));
  EXPECT_EQ(scheduler.RunOnce().ahead_of_expiry, 0);
  EXPECT_EQ(idp_.requests(), 1);
  clock_.Set(t0 + absl::Seconds(3599 - 359));
  EXPECT_EQ(scheduler.RunOnce().ahead_of_expiry, 1);
  EXPECT_EQ(idp_.requests(), 2);
  // Callers find the new token in the cache.
  absl::StatusOr<AccessToken> next = tokens_.GetAccessToken("robot", absl::Minutes(30));
  ASSERT_TRUE(next.ok());
  EXPECT_NE(next->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(idp_.requests(), 2);
  EXPECT_EQ(Outcome("refreshed"), 1) << "background refreshes are not caller requests";
}

TEST_F(TokenManagerTest, JitterSpreadsTheRefreshesOfManyGrants) {
  CreateAppWithSecret();
  constexpr int kGrants = 200;
  const absl::Time t0 = clock_.Now();
  for (int i = 0; i < kGrants; ++i) {
    AppOnlyGrant(absl::StrCat("g", i));
    ASSERT_TRUE(tokens_.GetAccessToken(absl::StrCat("g", i), absl::Minutes(5)).ok());
  }
  // The window is [expiry - 1.5 * slack, expiry - slack]: about half is due
  // in its middle, none before it, all after it.
  const absl::Time expiry = t0 + absl::Seconds(3599);
  const absl::Duration slack = absl::Seconds(359.9);
  EXPECT_EQ(tokens_.DueForRefresh(expiry - slack * 1.5 - absl::Seconds(1)).size(), 0u);
  const size_t middle = tokens_.DueForRefresh(expiry - slack * 1.25).size();
  EXPECT_GT(middle, kGrants * 0.3);
  EXPECT_LT(middle, kGrants * 0.7);
  EXPECT_EQ(tokens_.DueForRefresh(expiry - slack + absl::Seconds(1)).size(), static_cast<size_t>(kGrants));
}

TEST_F(TokenManagerTest, IdleDelegatedGrantsAreKeptAlive) {
  idp_.RegisterApp(kTenant, kClientId, "the-secret");
  idp_.AddRefreshToken("0.rt-idle", "alice");
  std::vector<CredentialInput> creds;
  creds.push_back(SecretInput("s1", "the-secret"));
  CreateApp(std::move(creds));
  DelegatedGrant("0.rt-idle");
  RefreshScheduler scheduler(tokens_, vault_, clock_, logger_, {});
  clock_.Advance(absl::Hours(24 * 29));
  EXPECT_EQ(scheduler.RunOnce().keepalive, 0);
  clock_.Advance(absl::Hours(24 * 2));
  RefreshScheduler::Report report = scheduler.RunOnce();
  EXPECT_EQ(report.keepalive, 1);
  EXPECT_EQ(report.failed, 0);
  Grant g = *vault_.GetGrant("alice");
  EXPECT_EQ(g.refresh_token_last_used_time, clock_.Now());
  EXPECT_EQ(vault_.OpenRefreshToken(g)->Reveal(), idp_.LatestRefreshToken("alice"));
}

TEST_F(TokenManagerTest, TheSchedulerRefreshesEveryDueGrantUnderItsConcurrencyCap) {
  CreateAppWithSecret();
  for (int i = 0; i < 20; ++i) {
    AppOnlyGrant(absl::StrCat("g", i));
    ASSERT_TRUE(tokens_.GetAccessToken(absl::StrCat("g", i), absl::Minutes(5)).ok());
  }
  SchedulerOptions options;
  options.max_concurrent = 3;
  RefreshScheduler scheduler(tokens_, vault_, clock_, logger_, options);
  // One app: its grants share its token.
  EXPECT_EQ(idp_.requests(), 1);
  clock_.Advance(absl::Seconds(3599));
  EXPECT_EQ(scheduler.RunOnce().ahead_of_expiry, 20);
  // The refreshes that ran at once before the first new token was kept each
  // asked the provider (at most the cap); the rest shared it.
  EXPECT_GE(idp_.requests(), 2);
  EXPECT_LE(idp_.requests(), 1 + 3);
  EXPECT_LE(tokens_.provider_requests_peak(), 3);
  EXPECT_TRUE(tokens_.DueForRefresh(clock_.Now()).empty());
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<AccessToken> t = tokens_.GetAccessToken(absl::StrCat("g", i), absl::Minutes(30));
    ASSERT_TRUE(t.ok());
    EXPECT_GT(t->expire_time, clock_.Now() + absl::Minutes(30));
  }
}

TEST_F(TokenManagerTest, AppOnlyGrantsOfOneAppShareItsTokenEachUnderItsOwnMailbox) {
  CreateAppWithSecret();
  for (const std::string id : {"a", "b"}) {
    Grant g;
    g.id = id;
    g.app = "contoso";
    g.mailbox = id + "@contoso.com";
    g.kind = GrantKind::kAppOnly;
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }
  Grant other_scope;
  other_scope.id = "smtp";
  other_scope.app = "contoso";
  other_scope.mailbox = "c@contoso.com";
  other_scope.kind = GrantKind::kAppOnly;
  other_scope.scopes = {"https://outlook.office365.com/.default", "offline_access"};
  ASSERT_TRUE(vault_.CreateGrant(other_scope).ok());
  absl::StatusOr<AccessToken> a = tokens_.GetAccessToken("a", absl::Minutes(5));
  absl::StatusOr<AccessToken> b = tokens_.GetAccessToken("b", absl::Minutes(5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(idp_.requests(), 1);
  EXPECT_EQ(a->token.Reveal(), b->token.Reveal());
  EXPECT_EQ(b->mailbox, "b@contoso.com");
  // Other scopes: another token.
  ASSERT_TRUE(tokens_.GetAccessToken("smtp", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 2);
  // The mail server refused a's token: a gets a new one from the provider,
  // not the shared one again; when b's (the same) is refused too, b gets that
  // new one without another request.
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(tokens_.RefreshRefused("a", a->token).ok());
  EXPECT_EQ(idp_.requests(), 3);
  absl::StatusOr<AccessToken> a2 = tokens_.GetAccessToken("a", absl::Minutes(5));
  ASSERT_TRUE(a2.ok());
  EXPECT_NE(a2->token.Reveal(), a->token.Reveal());
  ASSERT_TRUE(tokens_.RefreshRefused("b", b->token).ok());
  absl::StatusOr<AccessToken> b2 = tokens_.GetAccessToken("b", absl::Minutes(5));
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(b2->token.Reveal(), a2->token.Reveal());
  EXPECT_EQ(idp_.requests(), 3);
}

TEST(SaslTest, MicrosoftsDocumentedXoauth2Vector) {
  EXPECT_EQ(SaslXoauth2("test@contoso.onmicrosoft.com", Secret::CopyFrom("EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"))
                .Reveal(),
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0Nj"
            "bFJDM0VvQUEBAQ==");
  // Written into a message's field as is, replacing what it held.
  std::string field = "left over";
  SaslXoauth2Into("test@contoso.onmicrosoft.com", Secret::CopyFrom("EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"), &field);
  EXPECT_EQ(field,
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0Nj"
            "bFJDM0VvQUEBAQ==");
}

// Every split of the token and the user name against base64's 3-byte groups,
// and a field that held more or less than the result.
TEST(SaslTest, Xoauth2IsStandardBase64WhateverTheLengths) {
  std::string token;
  for (int token_size = 0; token_size < 40; ++token_size) {
    for (int user_size = 0; user_size < 7; ++user_size) {
      const std::string user = std::string("bob@contoso.com").substr(0, static_cast<size_t>(8 + user_size));
      const std::string expected =
          absl::Base64Escape(absl::StrCat("user=", user, "\x01" "auth=Bearer ", token, "\x01\x01"));
      EXPECT_EQ(SaslXoauth2(user, Secret::CopyFrom(token)).Reveal(), expected) << user << " " << token;
      std::string field(static_cast<size_t>(token_size * 7 % 100), '#');
      SaslXoauth2Into(user, Secret::CopyFrom(token), &field);
      EXPECT_EQ(field, expected);
    }
    token += static_cast<char>("Ew0+/z\xff-_."[token_size % 10]);
  }
}

TEST(SaslTest, Rfc7628OauthbearerVector) {
  // RFC 7628 section 4.1: the initial client response.
  EXPECT_EQ(SaslOauthbearer("user@example.com", "server.example.com", 143,
                            Secret::CopyFrom("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="))
                .Reveal(),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52"
            "YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
  // ',' and '=' in the user name are escaped (RFC 5801).
  EXPECT_EQ(SaslOauthbearer("a,b=c", "h", 993, Secret::CopyFrom("t")).Reveal(),
            absl::Base64Escape("n,a=a=2Cb=3Dc,\x01host=h\x01port=993\x01" "auth=Bearer t\x01\x01"));
}

}  // namespace
}  // namespace tokenbroker

namespace tokenbroker {
namespace {

// Two replicas on one store: each its own TokenManager (and cache), sharing
// the store as two tokenbrokerd on one PostgreSQL do.
class SharedTokensTest : public TokenManagerTest {
 protected:
  TokenManagerOptions Replica(const std::string& id) {
    TokenManagerOptions o = Options();
    o.replicas.enabled = true;
    o.replicas.replica_id = id;
    o.replicas.on_lease = [this, id](absl::string_view outcome) {
      absl::MutexLock lock(&mu_);
      ++outcomes_[absl::StrCat(id, "/", outcome)];
    };
    o.replicas.on_adopted = [this, id] {
      absl::MutexLock lock(&mu_);
      ++outcomes_[absl::StrCat(id, "/adopted")];
    };
    return o;
  }
  TokenManager a_{vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Replica("replica-a")};
  TokenManager b_{vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Replica("replica-b")};
};

TEST_F(SharedTokensTest, ATokenRefreshedByOneReplicaIsServedByTheOtherWithoutTheProvider) {
  CreateAppWithSecret();
  AppOnlyGrant();
  absl::StatusOr<AccessToken> first = a_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<AccessToken> second = b_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(second->expire_time, first->expire_time);
  EXPECT_EQ(second->mailbox, first->mailbox);
  EXPECT_EQ(idp_.requests(), 1);
  EXPECT_EQ(Outcome("replica-a/acquired"), 1);
  EXPECT_EQ(Outcome("replica-b/adopted"), 1);
  // Stored sealed: the store never holds the token itself.
  std::optional<SharedAccessToken> shared = *store_.GetSharedAccessToken("robot");
  ASSERT_TRUE(shared.has_value());
  EXPECT_THAT(shared->sealed, ::testing::Not(HasSubstr(std::string(first->token.Reveal()))));
  EXPECT_EQ(shared->holder, "replica-a");

  // Ahead of expiry, replica b's background refresh finds the one replica a
  // already did and takes it.
  clock_.Advance(absl::Minutes(55));
  ASSERT_TRUE(a_.RefreshNow("robot").ok());
  EXPECT_EQ(idp_.requests(), 2);
  ASSERT_TRUE(b_.RefreshNow("robot").ok());
  EXPECT_EQ(idp_.requests(), 2);
  EXPECT_EQ(b_.CachedExpiries()["robot"], a_.CachedExpiries()["robot"]);

  // A token the mail server refused is not taken from the store again.
  b_.Invalidate("robot");
  ASSERT_TRUE(b_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(idp_.requests(), 3);
}

// An app-only grant's token is its app's: a replica that holds it serves the
// app's other grants from it, with no lease, no store write and no provider
// request; a replica that adopted it from the store holds it too.
TEST_F(SharedTokensTest, AnAppTokenAReplicaHoldsServesTheAppsOtherGrantsWithoutALease) {
  CreateAppWithSecret();
  AppOnlyGrant("robot");
  AppOnlyGrant("robot-2");
  AppOnlyGrant("robot-3");
  absl::StatusOr<AccessToken> first = a_.GetAccessToken("robot", absl::Minutes(5));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<AccessToken> second = a_.GetAccessToken("robot-2", absl::Minutes(5));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(idp_.requests(), 1);
  EXPECT_EQ(Outcome("replica-a/acquired"), 1) << "robot-2 took no lease";
  EXPECT_FALSE(store_.GetSharedAccessToken("robot-2")->has_value()) << "nor wrote a shared token";

  // Replica b adopts robot's token from the store, and so holds the app's.
  ASSERT_TRUE(b_.GetAccessToken("robot", absl::Minutes(5)).ok());
  EXPECT_EQ(Outcome("replica-b/adopted"), 1);
  absl::StatusOr<AccessToken> third = b_.GetAccessToken("robot-3", absl::Minutes(5));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(third->mailbox, "robot@contoso.com");
  EXPECT_EQ(idp_.requests(), 1);
  EXPECT_EQ(Outcome("replica-b/acquired"), 0);

  // A token the mail server refused is not served from the held one either.
  b_.Invalidate("robot-3");
  absl::StatusOr<AccessToken> fresh = b_.GetAccessToken("robot-3", absl::Minutes(5));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_NE(fresh->token.Reveal(), first->token.Reveal());
  EXPECT_EQ(idp_.requests(), 2);
  // Nor is a disabled grant served from it.
  ASSERT_TRUE(vault_.SetGrantEnabled("robot-2", false).ok());
  absl::StatusOr<AccessToken> disabled = b_.GetAccessToken("robot-2", absl::Minutes(5));
  EXPECT_TRUE(absl::IsFailedPrecondition(disabled.status())) << disabled.status();
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(SharedTokensTest, ARotatedRefreshTokenIsWrittenOnlyUnderTheLeaseAndADisabledGrantIsNotAdopted) {
  CreateAppWithSecret();
  idp_.AddRefreshToken("0.rt-first", "alice");
  DelegatedGrant("0.rt-first");
  ASSERT_TRUE(a_.GetAccessToken("alice", absl::Minutes(5)).ok());
  Grant stored = *vault_.GetGrant("alice");
  EXPECT_EQ((*vault_.OpenRefreshToken(stored)).Reveal(), idp_.LatestRefreshToken("alice"));

  // A holder whose lease was taken over cannot store what it got.
  RefreshLease stalled = *store_.AcquireRefreshLease("alice", "replica-a", absl::ZeroDuration());
  RefreshLease successor = *store_.AcquireRefreshLease("alice", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(successor.took_over);
  absl::StatusOr<Grant> refused = vault_.StoreRefreshToken(stored, Secret::CopyFrom("0.rt-late"), &stalled);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  ASSERT_TRUE(store_.ReleaseRefreshLease(successor).ok());
  EXPECT_EQ((*vault_.OpenRefreshToken(*vault_.GetGrant("alice"))).Reveal(), idp_.LatestRefreshToken("alice"));

  ASSERT_TRUE(vault_.SetGrantEnabled("alice", false).ok());
  absl::StatusOr<AccessToken> disabled = b_.GetAccessToken("alice", absl::Minutes(5));
  EXPECT_TRUE(absl::IsFailedPrecondition(disabled.status())) << disabled.status();
  EXPECT_FALSE(store_.GetSharedAccessToken("alice")->has_value()) << "a grant change drops its shared token";
}

TEST(ReplicaMembershipTest, EveryGrantHasOneOwnerAmongTheLiveReplicas) {
  FakeClock clock;
  InMemoryCredentialStore store(clock);
  Logger logger(LogLevel::kError);
  ReplicaMembership a(store, clock, logger, "replica-a", absl::Seconds(5));
  ReplicaMembership b(store, clock, logger, "replica-b", absl::Seconds(5));
  ASSERT_TRUE(a.Beat().ok());
  ASSERT_TRUE(b.Beat().ok());
  ASSERT_TRUE(a.Beat().ok());
  EXPECT_THAT(a.Live(), ::testing::ElementsAre("replica-a", "replica-b"));
  int owned_by_a = 0;
  for (int g = 0; g < 1000; ++g) {
    const std::string grant = absl::StrCat("grant-", g);
    EXPECT_NE(a.Owns(grant), b.Owns(grant)) << grant;
    owned_by_a += a.Owns(grant);
  }
  EXPECT_GT(owned_by_a, 400);
  EXPECT_LT(owned_by_a, 600);
  // b falls silent for three heartbeats: a owns everything.
  clock.Advance(absl::Seconds(16));
  ASSERT_TRUE(a.Beat().ok());
  EXPECT_THAT(a.Live(), ::testing::ElementsAre("replica-a"));
  for (int g = 0; g < 100; ++g) EXPECT_TRUE(a.Owns(absl::StrCat("grant-", g)));
}

}  // namespace
}  // namespace tokenbroker
