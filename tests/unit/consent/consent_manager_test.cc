// ConsentManager against the Microsoft-shaped endpoint, with a fake clock: the
// authorization-code flow with PKCE and single-use expiring state, and the
// device-code flow's polling rules (interval, slow_down, declined, expired).
#include "service/consent/consent_manager.h"
#include "service/tokens/token_manager.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/crypto/random.h"
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
constexpr char kRedirect[] = "http://127.0.0.1:53682/";

class ConsentManagerTest : public ::testing::Test {
 protected:
  ConsentManagerTest()
      : sealer_(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))),
        vault_(store_, sealer_, clock_),
        idp_(clock_),
        microsoft_(idp_, clock_),
        logger_(LogLevel::kInfo, [this](absl::string_view line) { log_ += std::string(line); }, clock_),
        tokens_(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_),
        consent_(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Options()) {
    // As the broker wires it: a grant the vault changes leaves the token cache.
    vault_.OnGrantChanged([this](absl::string_view grant, ChangeOrigin) { tokens_.Forget(grant); });
    idp_.RegisterApp(kTenant, kClientId, "the-secret");
    App app;
    app.id = "contoso";
    app.tenant = kTenant;
    app.client_id = kClientId;
    std::vector<CredentialInput> creds = testing::ClientSecretCredentials("s1", "the-secret", clock_.Now() + absl::Hours(24 * 100));
    EXPECT_TRUE(vault_.CreateApp(app, std::move(creds)).ok());
  }

  ConsentOptions Options() {
    ConsentOptions o;
    o.on_consent = [this](absl::string_view flow, absl::string_view result) {
      observed_.push_back(absl::StrCat(flow, "/", result));
    };
    return o;
  }

  static Grant Spec(const std::string& id = "alice") {
    Grant g;
    g.id = id;
    g.app = "contoso";
    g.mailbox = id + "@contoso.com";
    return g;
  }

  static std::string Query(const std::string& url, const std::string& name) {
    return testing::ParseForm(url.substr(url.find('?') + 1))[name];
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
  std::vector<std::string> observed_;
  ConsentManager consent_;
};

TEST_F(ConsentManagerTest, AuthorizationUrlCarriesPkceS256StateAndTheGrantsScopes) {
  absl::StatusOr<AuthorizationStart> start = consent_.BeginAuthorization(Spec(), kRedirect, "alice@contoso.com", "");
  ASSERT_TRUE(start.ok()) << start.status();
  const std::string& url = start->authorization_url;
  EXPECT_TRUE(absl::StartsWith(url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?"))
      << url;
  EXPECT_EQ(Query(url, "response_type"), "code");
  EXPECT_EQ(Query(url, "client_id"), kClientId);
  EXPECT_EQ(Query(url, "redirect_uri"), kRedirect);
  EXPECT_EQ(Query(url, "scope"), "offline_access https://outlook.office.com/IMAP.AccessAsUser.All");
  EXPECT_EQ(Query(url, "code_challenge_method"), "S256");
  EXPECT_EQ(Query(url, "code_challenge").size(), 43u);
  EXPECT_EQ(Query(url, "login_hint"), "alice@contoso.com");
  EXPECT_EQ(Query(url, "state"), start->state);
  EXPECT_GE(start->state.size(), 43u);
  EXPECT_EQ(start->expire_time, clock_.Now() + absl::Minutes(10));
  // Two starts never share a state or challenge.
  absl::StatusOr<AuthorizationStart> again = consent_.BeginAuthorization(Spec(), kRedirect, "", "");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->state, start->state);
  EXPECT_NE(Query(again->authorization_url, "code_challenge"), Query(url, "code_challenge"));
}

TEST_F(ConsentManagerTest, CompletingRedeemsTheCodeWithTheVerifierAndCreatesAnActiveGrant) {
  absl::StatusOr<AuthorizationStart> start = consent_.BeginAuthorization(Spec(), kRedirect, "", "consent");
  ASSERT_TRUE(start.ok());
  const std::string code = idp_.IssueAuthorizationCode(start->authorization_url, "alice");
  ASSERT_FALSE(code.empty());
  absl::StatusOr<Grant> grant = consent_.CompleteAuthorization(start->state, Secret::CopyFrom(code));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->state, GrantState::kActive);
  EXPECT_EQ(grant->kind, GrantKind::kDelegated);
  EXPECT_EQ(grant->consent_time, clock_.Now());
  // The stored refresh token is the one the provider issued, and it works.
  EXPECT_EQ(vault_.OpenRefreshToken(*vault_.GetGrant("alice"))->Reveal(), idp_.LatestRefreshToken("alice"));
  absl::StatusOr<AccessToken> token = tokens_.GetAccessToken("alice", absl::Minutes(5));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(idp_.UserOfAccessToken(std::string(token->token.Reveal())), "alice");
  EXPECT_THAT(observed_, ::testing::ElementsAre("authorization_code/started", "authorization_code/completed"));
  EXPECT_THAT(log_, ::testing::Not(HasSubstr(code)));
}

TEST_F(ConsentManagerTest, AStateIsSingleUse) {
  absl::StatusOr<AuthorizationStart> start = consent_.BeginAuthorization(Spec(), kRedirect, "", "");
  ASSERT_TRUE(start.ok());
  const std::string code = idp_.IssueAuthorizationCode(start->authorization_url, "alice");
  ASSERT_TRUE(consent_.CompleteAuthorization(start->state, Secret::CopyFrom(code)).ok());
  absl::Status again = consent_.CompleteAuthorization(start->state, Secret::CopyFrom(code)).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(again.message()), HasSubstr("state: unknown or already used"));
}

TEST_F(ConsentManagerTest, AnExpiredStateIsRefusedAndUsedUp) {
  absl::StatusOr<AuthorizationStart> start = consent_.BeginAuthorization(Spec(), kRedirect, "", "");
  ASSERT_TRUE(start.ok());
  const std::string code = idp_.IssueAuthorizationCode(start->authorization_url, "alice");
  clock_.Advance(absl::Minutes(10));
  absl::Status s = consent_.CompleteAuthorization(start->state, Secret::CopyFrom(code)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("state: expired"));
  EXPECT_FALSE(vault_.GetGrant("alice").ok());
}

TEST_F(ConsentManagerTest, AForgedStateOrAWrongVerifierGetsNoGrant) {
  EXPECT_EQ(consent_.CompleteAuthorization("forged", Secret::CopyFrom("x")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A code issued for another PKCE challenge (another flow's URL) is refused
  // by the provider: the verifier does not match.
  absl::StatusOr<AuthorizationStart> mine = consent_.BeginAuthorization(Spec(), kRedirect, "", "");
  absl::StatusOr<AuthorizationStart> other = consent_.BeginAuthorization(Spec("bob"), kRedirect, "", "");
  ASSERT_TRUE(mine.ok() && other.ok());
  const std::string code = idp_.IssueAuthorizationCode(other->authorization_url, "mallory");
  absl::Status s = consent_.CompleteAuthorization(mine->state, Secret::CopyFrom(code)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("AADSTS501481"));
  EXPECT_FALSE(vault_.GetGrant("alice").ok());
}

TEST_F(ConsentManagerTest, BadRequestsNameTheField) {
  auto code = [&](const std::string& redirect, const std::string& prompt, Grant spec) {
    return consent_.BeginAuthorization(std::move(spec), redirect, "", prompt).status();
  };
  absl::Status s = code("http://example.com/cb", "", Spec());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("redirect_uri: http:// is allowed only on a loopback"));
  EXPECT_THAT(std::string(code("", "", Spec()).message()), HasSubstr("redirect_uri: required"));
  EXPECT_THAT(std::string(code("https://x/cb#frag", "", Spec()).message()), HasSubstr("fragment"));
  EXPECT_THAT(std::string(code(kRedirect, "always", Spec()).message()), HasSubstr("prompt:"));
  Grant no_app = Spec();
  no_app.app = "nope";
  EXPECT_THAT(std::string(code(kRedirect, "", no_app).message()), HasSubstr("grant.app: app \"nope\" does not exist"));
  EXPECT_TRUE(ValidateRedirectUri("https://broker.example.com/consent/callback").ok());
  EXPECT_TRUE(ValidateRedirectUri("http://localhost:8400").ok());
  EXPECT_TRUE(ValidateRedirectUri("http://[::1]:8400/").ok());
  EXPECT_FALSE(ValidateRedirectUri("http://127.0.0.1.evil.com/").ok());
  EXPECT_FALSE(ValidateRedirectUri("https://user@host/").ok());
}

TEST_F(ConsentManagerTest, AGrantOfAnotherKindIsNotTakenOver) {
  Grant robot = Spec("robot");
  robot.kind = GrantKind::kAppOnly;
  ASSERT_TRUE(vault_.CreateGrant(robot).ok());
  absl::Status s = consent_.BeginAuthorization(Spec("robot"), kRedirect, "", "").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(consent_.StartDeviceAuthorization(Spec("robot")).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ConsentManagerTest, DeviceFlowPollsAtTheIntervalUntilTheUserSignsIn) {
  idp_.SetDeviceCodeTimes(5, 900);
  absl::StatusOr<DeviceFlowStart> start = consent_.StartDeviceAuthorization(Spec());
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->user_code, idp_.LatestUserCode());
  EXPECT_EQ(start->verification_uri, "https://microsoft.com/devicelogin");
  EXPECT_THAT(start->message, HasSubstr(start->user_code));
  EXPECT_EQ(start->interval, absl::Seconds(5));
  EXPECT_EQ(start->expire_time, clock_.Now() + absl::Seconds(900));
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kPendingConsent);
  // Token requests for a pending grant say so, and cause no provider request.
  const int before = idp_.requests();
  EXPECT_THAT(std::string(tokens_.GetAccessToken("alice", absl::Minutes(1)).status().message()),
              HasSubstr("waiting for consent"));
  EXPECT_EQ(idp_.requests(), before);

  // Not before the interval.
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(consent_.PollDeviceFlows(), 0);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(consent_.PollDeviceFlows(), 1);  // authorization_pending
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kPendingConsent);
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(consent_.PollDeviceFlows(), 0);
  idp_.ApproveDeviceCode(start->user_code, "alice");
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(consent_.PollDeviceFlows(), 1);
  EXPECT_EQ(consent_.PendingDeviceFlows(), 0u);
  absl::StatusOr<Grant> grant = vault_.GetGrant("alice");
  EXPECT_EQ(grant->state, GrantState::kActive);
  EXPECT_EQ(vault_.OpenRefreshToken(*grant)->Reveal(), idp_.LatestRefreshToken("alice"));
  EXPECT_TRUE(tokens_.GetAccessToken("alice", absl::Minutes(1)).ok());
  EXPECT_THAT(observed_, ::testing::ElementsAre("device_code/started", "device_code/completed"));
}

TEST_F(ConsentManagerTest, SlowDownAddsFiveSecondsToTheInterval) {
  idp_.SetDeviceCodeTimes(5, 900);
  ASSERT_TRUE(consent_.StartDeviceAuthorization(Spec()).ok());
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(consent_.PollDeviceFlows(), 1);
  // The provider asks for slower polling (as if another poller had polled).
  idp_.QueueFailure(400, "slow_down", 70000);
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(consent_.PollDeviceFlows(), 1);
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(consent_.PollDeviceFlows(), 0) << "polled before the new 10 s interval";
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(consent_.PollDeviceFlows(), 1);
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kPendingConsent);
}

TEST_F(ConsentManagerTest, ADeclinedSignInEndsTheFlowAndSaysSo) {
  idp_.SetDeviceCodeTimes(1, 900);
  absl::StatusOr<DeviceFlowStart> start = consent_.StartDeviceAuthorization(Spec());
  ASSERT_TRUE(start.ok());
  idp_.DeclineDeviceCode(start->user_code);
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(consent_.PollDeviceFlows(), 1);
  EXPECT_EQ(consent_.PendingDeviceFlows(), 0u);
  absl::StatusOr<Grant> grant = vault_.GetGrant("alice");
  EXPECT_EQ(grant->state, GrantState::kNeedsReconsent);
  EXPECT_EQ(grant->last_error.oauth_error, "authorization_declined");
  EXPECT_THAT(grant->last_error.message, HasSubstr("declined"));
  EXPECT_THAT(observed_.back(), "device_code/failed");
}

TEST_F(ConsentManagerTest, AnExpiredDeviceCodeStopsPolling) {
  idp_.SetDeviceCodeTimes(5, 12);
  ASSERT_TRUE(consent_.StartDeviceAuthorization(Spec()).ok());
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(5));
    consent_.PollDeviceFlows();
  }
  const int requests = idp_.requests();
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(consent_.PollDeviceFlows(), 1);
  EXPECT_EQ(idp_.requests(), requests) << "an expired code is not sent to the provider";
  EXPECT_EQ(consent_.PendingDeviceFlows(), 0u);
  EXPECT_EQ(vault_.GetGrant("alice")->last_error.oauth_error, "expired_token");
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(consent_.PollDeviceFlows(), 0);
}

TEST_F(ConsentManagerTest, ReconsentKeepsAnActiveGrantServingUntilTheNewTokenArrives) {
  idp_.AddRefreshToken("rt-old", "alice");
  ASSERT_TRUE(vault_.ImportGrant(Spec(), Secret::CopyFrom("rt-old")).ok());
  idp_.SetDeviceCodeTimes(1, 900);
  absl::StatusOr<DeviceFlowStart> start = consent_.StartDeviceAuthorization(Spec());
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kActive);
  EXPECT_TRUE(tokens_.GetAccessToken("alice", absl::Minutes(1)).ok());
  idp_.ApproveDeviceCode(start->user_code, "alice");
  clock_.Advance(absl::Seconds(1));
  consent_.PollDeviceFlows();
  EXPECT_EQ(vault_.OpenRefreshToken(*vault_.GetGrant("alice"))->Reveal(), idp_.LatestRefreshToken("alice"));
}

TEST_F(ConsentManagerTest, AGrantThatNeedsReconsentShowsPendingWhileTheUserSignsIn) {
  idp_.AddRefreshToken("rt-old", "alice");
  ASSERT_TRUE(vault_.ImportGrant(Spec(), Secret::CopyFrom("rt-old")).ok());
  idp_.RevokeUser("alice");
  EXPECT_EQ(tokens_.GetAccessToken("alice", absl::Minutes(1)).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kNeedsReconsent);
  idp_.SetDeviceCodeTimes(1, 900);
  absl::StatusOr<DeviceFlowStart> start = consent_.StartDeviceAuthorization(Spec());
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kPendingConsent);
}

TEST_F(ConsentManagerTest, ClientSecretsGoAsHttpBasicWhenTheAppSaysSo) {
  App app = *vault_.GetApp("contoso");
  app.client_secret_auth = ClientSecretAuth::kBasic;
  ASSERT_TRUE(store_.UpdateApp(app).ok());
  Grant robot = Spec("robot");
  robot.kind = GrantKind::kAppOnly;
  ASSERT_TRUE(vault_.CreateGrant(robot).ok());
  absl::StatusOr<AccessToken> token = tokens_.GetAccessToken("robot", absl::Minutes(1));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(idp_.basic_auth_requests(), 1);
  EXPECT_EQ(idp_.UserOfAccessToken(std::string(token->token.Reveal())), std::string("app:") + kClientId);
}

}  // namespace
}  // namespace tokenbroker

namespace tokenbroker {
namespace {

// Two replicas on one store, each with its own ConsentManager: pending
// consents live in the store.
class SharedConsentTest : public ConsentManagerTest {
 protected:
  ConsentOptions Shared() {
    ConsentOptions o = Options();
    o.shared = true;
    return o;
  }
  ConsentManager a_{vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Shared()};
  ConsentManager b_{vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_, Shared()};
};

TEST_F(SharedConsentTest, AnAuthorizationBegunOnOneReplicaCompletesOnAnotherOnce) {
  absl::StatusOr<AuthorizationStart> start = a_.BeginAuthorization(Spec(), kRedirect, "", "", "admin");
  ASSERT_TRUE(start.ok()) << start.status();
  // Sealed in the store: neither the state nor the PKCE verifier is readable there.
  std::optional<PendingConsent> stored = *store_.GetPendingConsent(absl::StrCat("auth:", absl::BytesToHexString(Sha256(start->state))));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->grant, "alice");
  EXPECT_THAT(stored->sealed, ::testing::Not(HasSubstr("alice@contoso.com")));
  EXPECT_EQ(*b_.PendingGrant(start->state), "alice");

  const std::string code = idp_.IssueAuthorizationCode(start->authorization_url, "alice");
  ASSERT_FALSE(code.empty()) << "the URL carries the S256 challenge of the stored verifier";
  EXPECT_TRUE(absl::IsPermissionDenied(
      b_.CompleteAuthorization(start->state, Secret::CopyFrom(code), "intruder").status()));
  absl::StatusOr<Grant> grant = b_.CompleteAuthorization(start->state, Secret::CopyFrom(code), "admin");
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->state, GrantState::kActive);
  EXPECT_EQ(grant->mailbox, "alice@contoso.com");
  EXPECT_EQ(vault_.OpenRefreshToken(*vault_.GetGrant("alice"))->Reveal(), idp_.LatestRefreshToken("alice"));
  absl::StatusOr<Grant> again = a_.CompleteAuthorization(start->state, Secret::CopyFrom(code), "admin");
  EXPECT_TRUE(absl::IsInvalidArgument(again.status())) << again.status();
}

TEST_F(SharedConsentTest, ADeviceFlowStartedOnOneReplicaIsPolledOnceByAllAndCompletedByAny) {
  idp_.SetDeviceCodeTimes(5, 900);
  absl::StatusOr<DeviceFlowStart> start = a_.StartDeviceAuthorization(Spec());
  ASSERT_TRUE(start.ok()) << start.status();
  const int started = idp_.requests();
  clock_.Advance(absl::Seconds(5));
  // Both replicas' pollers run: one poll reaches the provider.
  EXPECT_EQ(b_.PollDeviceFlows() + a_.PollDeviceFlows(), 1);
  EXPECT_EQ(idp_.requests(), started + 1);
  EXPECT_EQ(vault_.GetGrant("alice")->state, GrantState::kPendingConsent);
  idp_.ApproveDeviceCode(start->user_code, "alice");
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(a_.PollDeviceFlows() + b_.PollDeviceFlows(), 0) << "not before the interval";
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(a_.PollDeviceFlows() + b_.PollDeviceFlows(), 1);
  EXPECT_EQ(idp_.requests(), started + 2);
  absl::StatusOr<Grant> grant = vault_.GetGrant("alice");
  EXPECT_EQ(grant->state, GrantState::kActive);
  EXPECT_EQ(vault_.OpenRefreshToken(*grant)->Reveal(), idp_.LatestRefreshToken("alice"));
  EXPECT_FALSE(store_.GetPendingConsent("device:alice")->has_value()) << "done: removed from the store";
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(a_.PollDeviceFlows() + b_.PollDeviceFlows(), 0);
}

}  // namespace
}  // namespace tokenbroker
