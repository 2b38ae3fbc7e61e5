// The token engine against a real, certified OpenID Connect provider (npm
// oidc-provider) over HTTPS: discovery, client credentials with
// client_secret_post and with private_key_jwt.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/http/curl_http_client.h"
#include "service/idp/oidc_provider.h"
#include "service/store/in_memory_credential_store.h"
#include "service/tokens/token_manager.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

class OidcE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = testing::MakeSelfSignedCertificate(dir_, "idp", 30, "rsa", "IP:127.0.0.1");
    app_cert_ = testing::MakeSelfSignedCertificate(dir_, "broker-app");
    auto proc = testing::Subprocess::Start({"/usr/bin/env", "node",
                                            testing::SourceDir() + "/tests/e2e/node/oidc_server.mjs", tls_.certificate,
                                            tls_.private_key, "oidc-Client-S3cret", app_cert_.certificate});
    ASSERT_TRUE(proc.ok()) << proc.status();
    server_ = std::move(*proc);
    auto line = server_->WaitForStderrLine(
        [](const std::string& l) { return l.find("\"listening\"") != std::string::npos; }, absl::Seconds(60));
    ASSERT_TRUE(line.has_value()) << server_->Stderr();
    issuer_ = absl::StrCat("https://127.0.0.1:", line->substr(line->find(':') + 1, line->find('}') - line->find(':') - 1));
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
    CredentialInput c;
    c.id = "secret";
    c.secret = Secret::CopyFrom(value);
    c.not_after = absl::Now() + absl::Hours(100);
    return c;
  }

  testing::TempDir dir_;
  testing::CertificateFiles tls_, app_cert_;
  std::unique_ptr<testing::Subprocess> server_;
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
  Enrol("with-secret", "broker-secret", Secret_("oidc-Client-S3cret"));
  EXPECT_EQ(*oidc_->TokenEndpoint(*vault_.GetApp("with-secret")), issuer_ + "/token");
  absl::StatusOr<AccessToken> t = tokens_->GetAccessToken("with-secret-grant", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GT(t->token.size(), 20u);
  EXPECT_EQ(t->token_type, "Bearer");
  EXPECT_THAT(t->scopes, ::testing::ElementsAre("imap"));
  EXPECT_GT(t->expire_time, absl::Now() + absl::Minutes(5));
}

TEST_F(OidcE2ETest, ClientCredentialsWithPrivateKeyJwt) {
  CredentialInput c;
  c.id = "cert";
  c.kind = CredentialKind::kCertificate;
  c.certificate_pem = testing::ReadFile(app_cert_.certificate);
  c.secret = Secret::CopyFrom(testing::ReadFile(app_cert_.private_key));
  Enrol("with-key", "broker-jwt", std::move(c));
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

}  // namespace
}  // namespace tokenbroker
