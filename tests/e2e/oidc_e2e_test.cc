// The token engine against a real, certified OpenID Connect provider (npm
// oidc-provider) over HTTPS: discovery, client credentials with
// client_secret_post and with private_key_jwt, and the interactive
// authorization-code flow driven headlessly through tokenbrokerd and
// `tokenbrokerctl consent begin` (with refresh-token rotation after it).
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/http/curl_http_client.h"
#include "service/idp/oidc_provider.h"
#include "service/store/in_memory_credential_store.h"
#include "service/tokens/token_manager.h"
#include "tests/support/credentials.h"
#include "tests/support/daemon.h"
#include "tests/support/postgres_server.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;

constexpr char kClientSecret[] = "oidc-Client-S3cret";

// oidc_server.mjs over HTTPS with a certificate made for it.
struct OidcServer {
  // Starts the server; the issuer URL, or empty (with a test failure).
  std::string Start(const testing::TempDir& dir) {
    tls = testing::MakeSelfSignedCertificate(dir, "idp", 30, "rsa", "IP:127.0.0.1");
    app_cert = testing::MakeSelfSignedCertificate(dir, "broker-app");
    auto proc = testing::Subprocess::Start({"/usr/bin/env", "node",
                                            testing::SourceDir() + "/tests/e2e/node/oidc_server.mjs", tls.certificate,
                                            tls.private_key, kClientSecret, app_cert.certificate});
    EXPECT_TRUE(proc.ok()) << proc.status();
    if (!proc.ok()) return "";
    process = std::move(*proc);
    auto line = process->WaitForStderrLine(
        [](const std::string& l) { return l.find("\"listening\"") != std::string::npos; }, absl::Seconds(60));
    EXPECT_TRUE(line.has_value()) << process->Stderr();
    if (!line.has_value()) return "";
    return absl::StrCat("https://127.0.0.1:", line->substr(line->find(':') + 1, line->find('}') - line->find(':') - 1));
  }
  // A person consents in a browser: `tokenbrokerctl consent begin` against
  // `target` prints the URL and listens on a loopback port; the headless
  // browser signs in as `user`. Returns the URL and the browser's result;
  // `ctl` is left to finish.
  struct Consent {
    std::unique_ptr<testing::Subprocess> ctl;
    std::string url;
    CommandResult browser;
  };
  Consent ConsentInBrowser(const std::string& target, const std::string& issuer, const std::string& user) {
    Consent c;
    auto ctl = testing::Subprocess::Start({testing::CtlPath(), "--target", target, "consent", "begin", user, "--app",
                                           "corp", "--mailbox", user, "--prompt", "consent"});
    EXPECT_TRUE(ctl.ok()) << ctl.status();
    if (!ctl.ok()) return c;
    c.ctl = std::move(*ctl);
    EXPECT_TRUE(c.ctl->WaitForStderrLine(
        [](const std::string& l) { return absl::StrContains(l, "Waiting for the sign-in at http://127.0.0.1:"); },
        absl::Seconds(30)))
        << c.ctl->Stderr();
    // stdout and stderr are read by different threads: wait for the URL itself.
    const std::string printed = c.ctl->WaitForStdout(
        [&](const std::string& out) {
          const size_t url = out.find(issuer + "/auth?");
          return url != std::string::npos && out.find('\n', url) != std::string::npos;
        },
        absl::Seconds(30));
    const size_t at = printed.find(issuer + "/auth?");
    EXPECT_NE(at, std::string::npos) << printed;
    if (at == std::string::npos) return c;
    c.url = printed.substr(at, printed.find('\n', at) - at);
    c.browser = testing::RunCommand({"/usr/bin/env", "python3",
                                     testing::SourceDir() + "/tests/e2e/headless_browser.py", "--ca-file",
                                     tls.certificate, "--login", user, c.url});
    return c;
  }

  testing::CertificateFiles tls, app_cert;
  std::unique_ptr<testing::Subprocess> process;
};

class OidcE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    issuer_ = idp_.Start(dir_);
    ASSERT_FALSE(issuer_.empty());
    tls_ = idp_.tls;
    app_cert_ = idp_.app_cert;
    CurlOptions options;
    options.ca_file = tls_.certificate;
    http_ = std::make_unique<CurlHttpClient>(options);
    oidc_ = std::make_unique<OidcProvider>(*http_, SystemClock::Get());
    tokens_ = std::make_unique<TokenManager>(vault_, std::map<Provider, IdentityProvider*>{{Provider::kOidc, oidc_.get()}},
                                             SystemClock::Get(), logger_);
  }

  void Enrol(const std::string& app_id, const std::string& client_id, CredentialInput credential) {
    App app;
    app.id = app_id;
    app.provider = Provider::kOidc;
    app.issuer = issuer_;
    app.client_id = client_id;
    std::vector<CredentialInput> creds;
    creds.push_back(std::move(credential));
    ASSERT_TRUE(vault_.CreateApp(app, std::move(creds)).ok());
    Grant g;
    g.id = app_id + "-grant";
    g.app = app_id;
    g.mailbox = "robot@example.com";
    g.kind = GrantKind::kAppOnly;
    g.scopes = {"imap"};
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }
  CredentialInput Secret_(const std::string& value) {
    return testing::ClientSecretCredential("secret", value, absl::Now() + absl::Hours(100));
  }

  testing::TempDir dir_;
  OidcServer idp_;
  testing::CertificateFiles tls_, app_cert_;
  std::string issuer_;
  InMemoryCredentialStore store_;
  Sealer sealer_{std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))};
  Vault vault_{store_, sealer_, SystemClock::Get()};
  Logger logger_{LogLevel::kError, [](absl::string_view) {}};
  std::unique_ptr<CurlHttpClient> http_;
  std::unique_ptr<OidcProvider> oidc_;
  std::unique_ptr<TokenManager> tokens_;
};

TEST_F(OidcE2ETest, DiscoveryThenClientCredentialsWithClientSecretPost) {
  Enrol("with-secret", "broker-secret", Secret_(kClientSecret));
  EXPECT_EQ(*oidc_->TokenEndpoint(*vault_.GetApp("with-secret")), issuer_ + "/token");
  absl::StatusOr<AccessToken> t = tokens_->GetAccessToken("with-secret-grant", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GT(t->token.size(), 20u);
  EXPECT_EQ(t->token_type, "Bearer");
  EXPECT_THAT(t->scopes, ::testing::ElementsAre("imap"));
  EXPECT_GT(t->expire_time, absl::Now() + absl::Minutes(5));
}

TEST_F(OidcE2ETest, ClientCredentialsWithPrivateKeyJwt) {
  Enrol("with-key", "broker-jwt", testing::CertificateCredential("cert", app_cert_));
  absl::StatusOr<AccessToken> t = tokens_->GetAccessToken("with-key-grant", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GT(t->token.size(), 20u);
}

TEST_F(OidcE2ETest, AWrongSecretIsInvalidClient) {
  Enrol("wrong", "broker-secret", Secret_("not-the-secret"));
  absl::Status s = tokens_->GetAccessToken("wrong-grant", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("invalid_client"));
  EXPECT_TRUE(vault_.GetApp("wrong")->credentials[0].failing);
}

// A person consents in a browser: tokenbrokerctl prints the URL and listens on
// a loopback port; the (headless) browser signs in at the real provider, which
// redirects to tokenbrokerctl with the code; the broker redeems it with PKCE
// and keeps the refresh token, which then rotates on every refresh.
TEST(OidcConsentE2ETest, AuthorizationCodeFlowInABrowserThroughTheLoopbackListener) {
  testing::TempDir dir;
  OidcServer idp;
  const std::string issuer = idp.Start(dir);
  ASSERT_FALSE(issuer.empty());
  const std::string config = dir.WriteFile(
      "broker.yaml", testing::DaemonConfig(dir) + absl::StrCat("http:\n  ca_file: \"", idp.tls.certificate, "\"\n"));
  testing::RunningDaemon daemon = testing::StartDaemon(config, dir.path());
  ASSERT_FALSE(daemon.grpc_address.empty());
  auto ctl = [&](const std::vector<std::string>& args) { return testing::Ctl(daemon.grpc_address, args); };
  ASSERT_EQ(ctl({"app", "create", "corp", "--provider", "oidc", "--issuer", issuer, "--client-id", "broker-native",
                 "--client-secret-file", dir.WriteFile("secret", kClientSecret), "--not-after", "2099-01-01"})
                .exit_code,
            0);

  OidcServer::Consent consent = idp.ConsentInBrowser(daemon.grpc_address, issuer, "frank");
  ASSERT_NE(consent.ctl, nullptr);
  EXPECT_THAT(consent.url, HasSubstr("code_challenge_method=S256"));
  const CommandResult& browser = consent.browser;
  EXPECT_EQ(browser.exit_code, 0) << browser.out << browser.err;
  EXPECT_THAT(browser.out, HasSubstr("Consent complete"));
  absl::StatusOr<int> exit = consent.ctl->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 0) << consent.ctl->Stderr();
  EXPECT_THAT(consent.ctl->Stdout(), ::testing::ContainsRegex("state: +active"));

  // The refresh token works, and rotates: two refreshes, two different tokens.
  CommandResult first = ctl({"token", "get", "frank"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  CommandResult second = ctl({"token", "get", "frank", "--min-valid", "1h"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(first.out, second.out);
  EXPECT_THAT(ctl({"grant", "show", "frank"}).out, HasSubstr("refresh token last used"));
  std::string metrics;
  for (absl::string_view line : absl::StrSplit(*testing::HttpGet(daemon.metrics_address, "/metrics"), '\n')) {
    if (absl::StartsWith(line, "tokenbroker_consents") || absl::StartsWith(line, "tokenbroker_refreshes")) {
      absl::StrAppend(&metrics, line, "\n");
    }
  }
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_consents_total{flow=\"authorization_code\",result=\"completed\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("tokenbroker_refreshes_total{outcome=\"ok\",provider=\"oidc\"} 2"));
  EXPECT_EQ(daemon.Stop(), 0);
  const std::string log = daemon.process->Stderr();
  EXPECT_THAT(log, Not(HasSubstr(kClientSecret)));
  EXPECT_THAT(log, Not(HasSubstr(first.out.substr(0, first.out.find('\n')))));
}

// The strictest judge of single flight across replicas that runs here:
// oidc-provider rotates the refresh token on every use and revokes the whole
// grant when a consumed one is presented again. Three brokers on one
// PostgreSQL refresh one grant concurrently, every call forcing a refresh:
// the grant is never revoked.
TEST(OidcConsentE2ETest, ThreeReplicasRefreshingConcurrentlyNeverPresentAConsumedRefreshToken) {
  testing::TempDir dir;
  OidcServer idp;
  const std::string issuer = idp.Start(dir);
  ASSERT_FALSE(issuer.empty());
  const std::string database = *testing::SharedPostgresServer().CreateDatabase();
  const std::string dsn = dir.WriteFile("pg.dsn", testing::SharedPostgresServer().Dsn(database));
  const std::string config = dir.WriteFile(
      "broker.yaml", testing::DaemonConfig(dir, "  create_if_missing: true\n", "5s",
                                           absl::StrCat("store:\n  postgres:\n    dsn_file: \"", dsn,
                                                        "\"\n    lease_ttl: 5s\n    heartbeat_interval: 1s\n")) +
                         absl::StrCat("http:\n  ca_file: \"", idp.tls.certificate, "\"\n"));
  constexpr int kReplicas = 3;
  testing::RunningDaemon replicas[kReplicas];
  for (auto& replica : replicas) {
    replica = testing::StartDaemon(config, dir.path());
    ASSERT_FALSE(replica.grpc_address.empty());
  }
  auto ctl = [&](int r, const std::vector<std::string>& args) { return testing::Ctl(replicas[r].grpc_address, args); };
  ASSERT_EQ(ctl(0, {"app", "create", "corp", "--provider", "oidc", "--issuer", issuer, "--client-id", "broker-native",
                    "--client-secret-file", dir.WriteFile("secret", kClientSecret), "--not-after", "2099-01-01"})
                .exit_code,
            0);
  // Consent through replica 1.
  OidcServer::Consent consent = idp.ConsentInBrowser(replicas[1].grpc_address, issuer, "frank");
  ASSERT_NE(consent.ctl, nullptr);
  ASSERT_EQ(consent.browser.exit_code, 0) << consent.browser.out << consent.browser.err;
  ASSERT_EQ(*consent.ctl->Wait(absl::Seconds(30)), 0) << consent.ctl->Stderr();

  // Every call asks for a token valid for an hour, which no token of this
  // provider is (its lifetime is one hour from issue): each call refreshes,
  // on three replicas at once.
  constexpr int kCallsPerReplica = 8;
  std::vector<std::thread> callers;
  std::atomic<int> failed{0};
  for (int r = 0; r < kReplicas; ++r) {
    callers.emplace_back([&, r] {
      for (int i = 0; i < kCallsPerReplica; ++i) {
        CommandResult got = ctl(r, {"token", "get", "frank", "--min-valid", "1h"});
        if (got.exit_code != 0) {
          ++failed;
          ADD_FAILURE() << "replica " << r << ": " << got.err;
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_THAT(ctl(2, {"grant", "show", "frank"}).out, ::testing::ContainsRegex("state: +active"));
  double refreshes = 0, contended = 0;
  for (int r = 0; r < kReplicas; ++r) {
    for (absl::string_view line : absl::StrSplit(*testing::HttpGet(replicas[r].metrics_address, "/metrics"), '\n')) {
      double v = 0;
      if (absl::ConsumePrefix(&line, "tokenbroker_refreshes_total{outcome=\"ok\",provider=\"oidc\"} ") &&
          absl::SimpleAtod(line, &v)) {
        refreshes += v;
      }
      if (absl::ConsumePrefix(&line, "tokenbroker_refresh_leases_total{outcome=\"contended\"} ") &&
          absl::SimpleAtod(line, &v)) {
        contended += v;
      }
    }
  }
  std::printf("[ replicas ] oidc-provider with rotation and reuse revocation: %d calls on %d replicas at once, %.0f "
              "refreshes, %.0f lease waits, grant still active\n",
              kReplicas * kCallsPerReplica, kReplicas, refreshes, contended);
  EXPECT_GE(refreshes, kReplicas * kCallsPerReplica);
  for (auto& replica : replicas) EXPECT_EQ(replica.Stop(), 0);
}

}  // namespace
}  // namespace tokenbroker
