// The token engine end to end: tokenbrokerctl -> tokenbrokerd -> HTTPS ->
// a Microsoft-shaped token endpoint the broker has never seen, with real TLS.
#include <signal.h>

#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/crypto/certificate.h"
#include "service/crypto/sealer.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "service/tokens/token_manager.h"
#include "service/vault/vault.h"
#include "tests/support/daemon.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClientSecret[] = "e2e-Client-S3cret~value";

class TokenE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = testing::MakeSelfSignedCertificate(dir_, "idp", 30, "rsa", "IP:127.0.0.1");
    ASSERT_TRUE(server_.Start(tls_.certificate, tls_.private_key).ok());
    authority_ = absl::StrCat("127.0.0.1:", server_.port());
    idp_.SetHost(authority_);
    idp_.RegisterApp(kTenant, "client-1", kClientSecret);
    config_ = dir_.WriteFile("broker.yaml", testing::DaemonConfig(dir_) +
                                                absl::StrCat("http:\n  ca_file: \"", tls_.certificate,
                                                             "\"\ntokens:\n  initial_backoff: 0s\n"));
    Start();
    const std::string secret = dir_.WriteFile("client-secret", kClientSecret);
    MustCtl({"app", "create", "contoso", "--provider", "microsoft", "--tenant", kTenant, "--client-id", "client-1",
             "--authority-host", authority_, "--client-secret-file", secret, "--not-after", "2099-01-01"});
  }
  void TearDown() override {
    std::string metrics, audit;
    if (daemon_.process != nullptr) {
      metrics = testing::HttpGet(daemon_.metrics_address, "/metrics").value_or("");
      audit = Ctl({"--output", "json", "audit", "list", "--limit", "1000"}).out;
      daemon_.Stop();
      KeepLog();
    }
    // Nothing secret in the broker's log, metrics or audit trail, ever.
    for (const std::string& secret : secrets_) {
      EXPECT_THAT(log_, Not(HasSubstr(secret)));
      EXPECT_THAT(metrics, Not(HasSubstr(secret)));
      EXPECT_THAT(audit, Not(HasSubstr(secret)));
    }
  }

  void Start() {
    daemon_ = testing::StartDaemon(config_, dir_.path());
    ASSERT_FALSE(daemon_.grpc_address.empty());
  }
  void KeepLog() { log_ += daemon_.process->Stderr(); }
  CommandResult Ctl(const std::vector<std::string>& args) { return testing::Ctl(daemon_.grpc_address, args); }
  CommandResult MustCtl(const std::vector<std::string>& args) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }
  std::string Token(const std::string& grant, const std::string& min_valid = "5m") {
    CommandResult r = MustCtl({"token", "get", grant, "--min-valid", min_valid});
    std::string token = r.out.substr(0, r.out.find('\n'));
    secrets_.push_back(token);
    return token;
  }
  // The lines of /metrics that start with `prefix`.
  std::string Metrics(const std::string& prefix = "tokenbroker_") {
    std::string out;
    for (absl::string_view line : absl::StrSplit(*testing::HttpGet(daemon_.metrics_address, "/metrics"), '\n')) {
      if (absl::StartsWith(line, prefix) && !absl::StartsWith(line, "tokenbroker_grpc") &&
          !absl::StrContains(line, "_bucket")) {
        absl::StrAppend(&out, line, "\n");
      }
    }
    return out;
  }

  testing::TempDir dir_;
  testing::CertificateFiles tls_;
  testing::FakeMicrosoft idp_{SystemClock::Get()};
  testing::HttpsServer server_{idp_, ""};
  std::string authority_;
  std::string config_;
  testing::RunningDaemon daemon_;
  std::string log_;
  std::vector<std::string> secrets_ = {kClientSecret};
};

TEST_F(TokenE2ETest, AppOnlyTokensSurviveAProviderOutageAndRecover) {
  MustCtl({"grant", "create", "robot", "--app", "contoso", "--mailbox", "robot@contoso.com"});
  const std::string first = Token("robot");
  EXPECT_EQ(idp_.UserOfAccessToken(first), "app:client-1");
  CommandResult json = MustCtl({"--output", "json", "token", "get", "robot"});
  EXPECT_THAT(json.out, HasSubstr("\"mailbox\": \"robot@contoso.com\""));
  EXPECT_THAT(json.out, HasSubstr("\"sasl_xoauth2\": \"" +
                                  std::string(SaslXoauth2("robot@contoso.com", Secret::CopyFrom(first)).Reveal())));
  EXPECT_EQ(idp_.requests(), 1);

  // The provider goes away: asked for more validity than the cached token has
  // left, the broker tries to refresh, fails, and still serves the cached
  // token, which is valid.
  server_.Stop();
  EXPECT_EQ(Token("robot", "59m59s"), first);
  MustCtl({"grant", "create", "other", "--app", "contoso", "--mailbox", "other@contoso.com"});
  // Another grant of the app shares the app's token (no provider request),
  // under its own mailbox...
  const std::string shared = Token("other");
  EXPECT_EQ(shared, first);
  EXPECT_EQ(idp_.requests(), 1);
  // ...but a grant without a token that needs more validity than the app's
  // token has left cannot get one while the provider is down.
  MustCtl({"grant", "create", "third", "--app", "contoso", "--mailbox", "third@contoso.com"});
  CommandResult down = Ctl({"token", "get", "third", "--min-valid", "59m59s"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE: the identity provider could not be reached"));
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_token_requests_total{result=\"stale\"} 1"));
  // tokenbrokerctl retries UNAVAILABLE (4 attempts): 1 + 4 failed refreshes.
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_token_requests_total{result=\"error\"} 4"));
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_refreshes_total{outcome=\"transient\",provider=\"microsoft\"} 5"));
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_refreshes_total{outcome=\"ok\",provider=\"microsoft\"} 1"));

  // It comes back: the next request refreshes.
  ASSERT_TRUE(server_.Start(tls_.certificate, tls_.private_key, std::stoi(authority_.substr(10))).ok());
  const std::string second = Token("robot", "59m59s");
  EXPECT_NE(second, first);
  EXPECT_EQ(idp_.UserOfAccessToken(second), "app:client-1");
  EXPECT_FALSE(Token("other").empty());
  KeepLog();
}

TEST_F(TokenE2ETest, ATenantWithARateOfItsOwnIsPacedAtItWhileOthersGoOn) {
  // fabrikam is to be spared: one provider request every 100 s. contoso
  // keeps the default (50 a second). Nothing waits for a turn (max wait 0).
  constexpr char kSpared[] = "fabrikam.onmicrosoft.com";
  daemon_.Stop();
  KeepLog();
  config_ = dir_.WriteFile(
      "broker.yaml",
      testing::DaemonConfig(dir_) +
          absl::StrCat("http:\n  ca_file: \"", tls_.certificate,
                       "\"\ntokens:\n  initial_backoff: 0s\n  tenant_max_wait: 0s\n  tenant_rates:\n"
                       "  - provider: microsoft\n    tenant: ",
                       kSpared, "\n    requests_per_second: 0.01\n"));
  Start();
  const std::string secret = dir_.WriteFile("client-secret", kClientSecret);
  // Two apps in each tenant: app-only grants of one app would share a token.
  for (const auto& [app, tenant, client] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"contoso-2", kTenant, "client-2"}, {"fabrikam", kSpared, "client-3"}, {"fabrikam-2", kSpared, "client-4"}}) {
    idp_.RegisterApp(tenant, client, kClientSecret);
    MustCtl({"app", "create", app, "--provider", "microsoft", "--tenant", tenant, "--client-id", client,
             "--authority-host", authority_, "--client-secret-file", secret, "--not-after", "2099-01-01"});
    MustCtl({"grant", "create", app + "-robot", "--app", app, "--mailbox", "robot@" + tenant});
  }
  MustCtl({"grant", "create", "contoso-robot", "--app", "contoso", "--mailbox", "robot@contoso.com"});

  EXPECT_FALSE(Token("fabrikam-robot").empty());
  CommandResult spared = Ctl({"token", "get", "fabrikam-2-robot"});
  EXPECT_EQ(spared.exit_code, 1);
  EXPECT_THAT(spared.err, HasSubstr(absl::StrCat("UNAVAILABLE: too many token requests are waiting for tenant "
                                                 "\"microsoft/",
                                                 kSpared, "\" (no request was made)")));
  // The default tenant's two apps each get their token at once.
  EXPECT_FALSE(Token("contoso-robot").empty());
  EXPECT_FALSE(Token("contoso-2-robot").empty());
  EXPECT_EQ(idp_.requests(), 3) << "one for each token; none for the spared tenant's second app";
  const std::string throttled = Metrics("tokenbroker_provider_requests_paced_total{outcome=\"throttled\"}");
  ASSERT_THAT(throttled, HasSubstr("} "));
  EXPECT_GE(std::stod(throttled.substr(throttled.find("} ") + 2)), 1) << throttled;
  KeepLog();
}

TEST_F(TokenE2ETest, ARotatedRefreshTokenSurvivesASigkillRightAfterTheRefresh) {
  idp_.AddRefreshToken("0.rt-imported-alice", "alice");
  const std::string rt = dir_.WriteFile("rt", "0.rt-imported-alice");
  MustCtl({"grant", "import", "alice", "--app", "contoso", "--mailbox", "alice@contoso.com", "--refresh-token-file", rt});
  EXPECT_EQ(idp_.UserOfAccessToken(Token("alice")), "alice");
  daemon_.process->Signal(SIGKILL);
  ASSERT_EQ(*daemon_.process->Wait(absl::Seconds(30)), 128 + SIGKILL);
  KeepLog();
  {
    Sealer sealer(std::make_shared<const Keyring>(*Keyring::LoadFile(dir_.File("var/keyring.yaml"))));
    auto db = SqliteDatabase::Open(dir_.File("var/tokenbroker.db"), SqliteMigrations());
    SqlCredentialStore store(std::make_unique<SqliteBackend>(std::move(*db)));
    FakeClock clock;
    Vault vault(store, sealer, clock);
    const std::string latest = idp_.LatestRefreshToken("alice");
    EXPECT_NE(latest, "0.rt-imported-alice");
    EXPECT_EQ(vault.OpenRefreshToken(*vault.GetGrant("alice"))->Reveal(), latest);
    secrets_.push_back(latest);
  }
  Start();
  EXPECT_EQ(idp_.UserOfAccessToken(Token("alice")), "alice");
  KeepLog();
}

TEST_F(TokenE2ETest, ImportWithVerifyRedeemsTheTokenAndReplaceNeedsAnExistingGrant) {
  idp_.AddRefreshToken("0.rt-erin", "erin");
  const std::string rt = dir_.WriteFile("rt-erin", "0.rt-erin");
  CommandResult missing = Ctl({"grant", "import", "erin", "--app", "contoso", "--mailbox", "erin@contoso.com",
                               "--refresh-token-file", rt, "--replace"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND: grant \"erin\" does not exist"));
  EXPECT_EQ(Ctl({"grant", "show", "erin"}).exit_code, 1);
  EXPECT_EQ(idp_.requests(), 0);

  MustCtl({"grant", "import", "erin", "--app", "contoso", "--mailbox", "erin@contoso.com", "--refresh-token-file", rt,
           "--verify"});
  EXPECT_EQ(idp_.requests(), 1);  // redeemed once, now
  secrets_.push_back(idp_.LatestRefreshToken("erin"));
  idp_.QueueFailure(400, "invalid_grant", 50173);
  CommandResult refused = Ctl({"grant", "import", "erin", "--app", "contoso", "--mailbox", "erin@contoso.com",
                               "--refresh-token-file", dir_.WriteFile("rt-old", "0.rt-revoked"), "--replace",
                               "--verify"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("verify: the grant was stored, but grant \"erin\" needs consent again"));
  KeepLog();
}

TEST_F(TokenE2ETest, AnExpiredRefreshTokenMovesTheGrantToNeedsReconsent) {
  idp_.AddRefreshToken("0.rt-bob", "bob");
  MustCtl({"grant", "import", "bob", "--app", "contoso", "--mailbox", "bob@contoso.com", "--refresh-token-file",
           dir_.WriteFile("rt", "0.rt-bob")});
  idp_.QueueFailure(400, "invalid_grant", 700082);
  CommandResult r = Ctl({"token", "get", "bob"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION: grant \"bob\" needs consent again: the refresh token expired"));
  EXPECT_THAT(r.err, HasSubstr("AADSTS700082"));
  EXPECT_THAT(r.err, HasSubstr("have the user consent with `tokenbrokerctl consent begin bob --app contoso --mailbox "
                               "bob@contoso.com` (or `tokenbrokerctl consent device bob --app contoso --mailbox "
                               "bob@contoso.com`)"));
  CommandResult show = MustCtl({"grant", "show", "bob"});
  EXPECT_THAT(show.out, HasSubstr("needs_reconsent"));
  EXPECT_THAT(show.out, HasSubstr("invalid_grant (700082)"));
  EXPECT_THAT(Metrics(), HasSubstr("tokenbroker_refreshes_total{outcome=\"invalid_grant\",provider=\"microsoft\"} 1"));
  KeepLog();
}

// An operator's `grant watch` hears a grant whose consent was revoked at the
// provider (why, and the commands that send the user a fresh consent link)
// and hears it active again after consent; the broker logs both as warnings.
TEST_F(TokenE2ETest, GrantWatchHearsAGrantRevokedAtTheProviderAndActiveAgain) {
  idp_.AddRefreshToken("0.rt-bob", "bob");
  MustCtl({"grant", "import", "bob", "--app", "contoso", "--mailbox", "bob@contoso.com", "--refresh-token-file",
           dir_.WriteFile("rt", "0.rt-bob")});
  auto watch = testing::Subprocess::Start(
      {testing::CtlPath(), "--target", daemon_.grpc_address, "--output", "json", "grant", "watch", "--current"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto heard = [&](const std::string& what) {
    return (*watch)->WaitForStdout([&](const std::string& out) { return absl::StrContains(out, what); },
                                   absl::Seconds(30));
  };
  // The watch is live (subscribed at the broker) once it says so.
  ASSERT_TRUE((*watch)
                  ->WaitForStderrLine([](const std::string& l) { return absl::StrContains(l, "watching"); },
                                      absl::Seconds(30))
                  .has_value())
      << (*watch)->Stderr();
  idp_.RevokeUser("bob");
  EXPECT_EQ(Ctl({"token", "get", "bob"}).exit_code, 1);
  std::string out = heard("GRANT_STATE_NEEDS_RECONSENT");
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  std::string stuck;
  for (const std::string& line : lines) {
    if (absl::StrContains(line, "GRANT_STATE_NEEDS_RECONSENT")) stuck = line;
  }
  EXPECT_THAT(stuck, HasSubstr("\"grant\":\"bob\""));
  EXPECT_THAT(stuck, HasSubstr("\"previous_state\":\"GRANT_STATE_ACTIVE\""));
  EXPECT_THAT(stuck, HasSubstr("\"provider_code\":\"50173\""));
  EXPECT_THAT(stuck, HasSubstr("have the user consent with `tokenbrokerctl consent begin bob --app contoso "
                               "--mailbox bob@contoso.com`"));
  EXPECT_THAT(stuck, Not(HasSubstr("rt-bob")));

  idp_.AddRefreshToken("0.rt-bob-2", "bob");
  MustCtl({"grant", "import", "bob", "--app", "contoso", "--mailbox", "bob@contoso.com", "--refresh-token-file",
           dir_.WriteFile("rt2", "0.rt-bob-2"), "--replace"});
  out = heard("\"previous_state\":\"GRANT_STATE_NEEDS_RECONSENT\"");
  EXPECT_THAT(out, HasSubstr("\"state\":\"GRANT_STATE_ACTIVE\""));
  (*watch)->Signal(SIGINT);
  EXPECT_TRUE((*watch)->Wait(absl::Seconds(10)).ok());

  // The text form, and the grant that still needs someone is listed first
  // with --current.
  idp_.RevokeUser("bob");
  EXPECT_EQ(Ctl({"token", "get", "bob"}).exit_code, 1);
  auto text = testing::Subprocess::Start(
      {testing::CtlPath(), "--target", daemon_.grpc_address, "grant", "watch", "--current"});
  ASSERT_TRUE(text.ok());
  const std::string first = (*text)->WaitForStdout(
      [](const std::string& o) { return absl::StrContains(o, "\n"); }, absl::Seconds(30));
  EXPECT_THAT(first, HasSubstr(" bob needs_reconsent: the grant was revoked"));
  EXPECT_THAT(first, HasSubstr("; have the user consent with `tokenbrokerctl consent begin bob"));
  (*text)->Signal(SIGINT);
  EXPECT_TRUE((*text)->Wait(absl::Seconds(10)).ok());

  // A watch still open when the broker stops ends at once (it does not hold
  // the drain for the grace period) and tells the operator to watch again.
  auto open = testing::Subprocess::Start({testing::CtlPath(), "--target", daemon_.grpc_address, "grant", "watch"});
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE((*open)
                  ->WaitForStderrLine([](const std::string& l) { return absl::StrContains(l, "watching"); },
                                      absl::Seconds(30))
                  .has_value());
  const absl::Time stopping = absl::Now();
  EXPECT_EQ(daemon_.Stop(), 0);
  EXPECT_LT(absl::Now() - stopping, absl::Seconds(5)) << "the 5s grace period was waited out";
  EXPECT_EQ(*(*open)->Wait(absl::Seconds(10)), 1);
  EXPECT_THAT((*open)->Stderr(), HasSubstr("UNAVAILABLE: the broker is shutting down; watch again"));

  // The replica that made each change logged it at warning level.
  KeepLog();
  daemon_.process.reset();
  EXPECT_THAT(log_, HasSubstr("grant \\\"bob\\\" gets no tokens until someone acts: the grant was revoked"));
  EXPECT_THAT(log_, HasSubstr("grant \\\"bob\\\" is active again"));
}

TEST_F(TokenE2ETest, RetryAfterIsHonouredWithoutHittingTheProviderAgain) {
  MustCtl({"grant", "create", "robot", "--app", "contoso", "--mailbox", "robot@contoso.com"});
  idp_.QueueFailure(429, "temporarily_unavailable", 0, 3);
  CommandResult r = Ctl({"token", "get", "robot"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.err, HasSubstr("retry in 3s"));
  EXPECT_EQ(Ctl({"token", "get", "robot"}).exit_code, 1);
  EXPECT_EQ(idp_.requests(), 1) << "the second call came within Retry-After";
  EXPECT_THAT(Metrics(), HasSubstr("tokenbroker_refreshes_total{outcome=\"throttled\",provider=\"microsoft\"} 1"));
  KeepLog();
}

TEST_F(TokenE2ETest, ACertificateCredentialSignsAnAssertionTheEndpointVerifies) {
  testing::CertificateFiles app_cert = testing::MakeSelfSignedCertificate(dir_, "contoso-app");
  MustCtl({"app", "create", "contoso-cert", "--provider", "microsoft", "--tenant", kTenant, "--client-id", "client-2",
           "--authority-host", authority_, "--certificate", app_cert.certificate, "--private-key",
           app_cert.private_key});
  const std::string pem = testing::ReadFile(app_cert.certificate);
  CertificateInfo info = *ParseCertificatePem(pem);
  idp_.RegisterApp(kTenant, "client-2", "", pem, info.thumbprint_sha256, info.thumbprint_sha1);
  MustCtl({"grant", "create", "robot2", "--app", "contoso-cert", "--mailbox", "robot2@contoso.com"});
  EXPECT_EQ(idp_.UserOfAccessToken(Token("robot2")), "app:client-2");
  KeepLog();
}

// A grant removed from the configuration file is deleted by the running
// broker at the next check, and its cached token is no longer handed out.
TEST_F(TokenE2ETest, AGrantRemovedFromTheConfigurationFileStopsBeingServed) {
  daemon_.Stop();
  KeepLog();
  const std::string secret = dir_.WriteFile("declared-secret", kClientSecret);
  const std::string base = testing::ReadFile(config_);
  const std::string app = absl::StrCat("declarations_check_interval: 100ms\napps:\n  - id: declared\n",
                                       "    provider: microsoft\n    tenant: ", kTenant, "\n",
                                       "    client_id: client-1\n    authority_host: \"", authority_, "\"\n",
                                       "    credentials:\n      - id: s1\n        client_secret_file: \"", secret,
                                       "\"\n        not_after: 2099-01-01\n");
  dir_.WriteFile("broker.yaml", base + app + "grants:\n  - id: robot\n    app: declared\n    mailbox: robot@contoso.com\n");
  Start();
  Token("robot");
  EXPECT_EQ(idp_.requests(), 1);

  dir_.WriteFile("broker.yaml", base + app);
  ASSERT_TRUE(daemon_.process->WaitForStderrLine(
      [](const std::string& l) {
        return absl::StrContains(l, "\"msg\":\"declarations reconciled\"") && absl::StrContains(l, "\"deleted\":1");
      },
      absl::Seconds(30)))
      << daemon_.process->Stderr();
  CommandResult gone = Ctl({"token", "get", "robot"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Ctl({"grant", "show", "robot"}).exit_code, 1);
  EXPECT_EQ(idp_.requests(), 1);
  KeepLog();
}

TEST_F(TokenE2ETest, DeviceCodeConsentWaitsForTheSignInThenTheGrantServesTokens) {
  idp_.SetDeviceCodeTimes(1, 120);
  auto ctl = testing::Subprocess::Start({testing::CtlPath(), "--target", daemon_.grpc_address, "consent", "device",
                                         "carol", "--app", "contoso", "--mailbox", "carol@contoso.com"});
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  ASSERT_TRUE((*ctl)->WaitForStderrLine(
      [](const std::string& l) { return absl::StrContains(l, "Waiting for the sign-in"); }, absl::Seconds(30)))
      << (*ctl)->Stderr();
  const std::string user_code = idp_.LatestUserCode();
  EXPECT_THAT((*ctl)->WaitForStdout(
                  [](const std::string& out) { return absl::StrContains(out, "to authenticate.\n"); },
                  absl::Seconds(30)),
              HasSubstr("https://microsoft.com/devicelogin and enter the code " + user_code));
  EXPECT_THAT(MustCtl({"grant", "show", "carol"}).out, HasSubstr("pending_consent"));
  EXPECT_EQ(Ctl({"token", "get", "carol"}).exit_code, 1);
  idp_.ApproveDeviceCode(user_code, "carol");
  absl::StatusOr<int> exit = (*ctl)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0) << (*ctl)->Stderr();
  EXPECT_THAT((*ctl)->Stdout(), HasSubstr("active"));
  EXPECT_EQ(idp_.UserOfAccessToken(Token("carol")), "carol");
  secrets_.push_back(idp_.LatestRefreshToken("carol"));
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_consents_total{flow=\"device_code\",result=\"completed\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_grant_access_token_expiry_timestamp_seconds{grant=\"carol\"}"));
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_idp_http_requests_total{provider=\"microsoft\",status_class=\"4xx\"}"));
  EXPECT_THAT(metrics, Not(HasSubstr("tokenbroker_idp_http_requests_total{provider=\"microsoft\",status_class=\"2xx\"} 0")));
  KeepLog();
}

TEST_F(TokenE2ETest, ADeclinedDeviceSignInFailsTheCommandWithTheReason) {
  idp_.SetDeviceCodeTimes(1, 120);
  auto ctl = testing::Subprocess::Start({testing::CtlPath(), "--target", daemon_.grpc_address, "consent", "device",
                                         "dave", "--app", "contoso", "--mailbox", "dave@contoso.com"});
  ASSERT_TRUE(ctl.ok());
  ASSERT_TRUE((*ctl)->WaitForStderrLine(
      [](const std::string& l) { return absl::StrContains(l, "Waiting for the sign-in"); }, absl::Seconds(30)));
  idp_.DeclineDeviceCode(idp_.LatestUserCode());
  absl::StatusOr<int> exit = (*ctl)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 1);
  EXPECT_THAT((*ctl)->Stderr(), HasSubstr("the user declined the sign-in"));
  EXPECT_THAT(MustCtl({"grant", "show", "dave"}).out, HasSubstr("needs_reconsent"));
  EXPECT_THAT(Metrics(), HasSubstr("tokenbroker_consents_total{flow=\"device_code\",result=\"failed\"} 1"));
  KeepLog();
}

TEST_F(TokenE2ETest, AuthorizationCodeConsentCompletedFromTheRedirectAddress) {
  // A machine without a browser: print the URL, sign in elsewhere, paste the
  // address the browser was sent to.
  CommandResult begin = MustCtl({"consent", "begin", "erin", "--app", "contoso", "--mailbox", "erin@contoso.com",
                                 "--no-listen", "--redirect-uri", "https://broker.example.com/consent"});
  const size_t at = begin.out.find("https://" + authority_);
  ASSERT_NE(at, std::string::npos) << begin.out;
  const std::string url = begin.out.substr(at, begin.out.find('\n', at) - at);
  const std::string code = idp_.IssueAuthorizationCode(url, "erin");
  ASSERT_FALSE(code.empty()) << url;
  const std::string state = testing::ParseForm(url.substr(url.find('?') + 1))["state"];
  const std::string redirect = "https://broker.example.com/consent?code=" + code + "&state=" + state +
                               "&session_state=ignored";
  CommandResult done = MustCtl({"consent", "complete", "--url", redirect});
  EXPECT_THAT(done.out, HasSubstr("active"));
  EXPECT_EQ(idp_.UserOfAccessToken(Token("erin")), "erin");
  // The state was used up.
  CommandResult again = Ctl({"consent", "complete", "--url", redirect});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("INVALID_ARGUMENT: state: unknown or already used"));
  secrets_.push_back(code);
  secrets_.push_back(idp_.LatestRefreshToken("erin"));
  KeepLog();
}

}  // namespace
}  // namespace tokenbroker
