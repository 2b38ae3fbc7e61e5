// Caller security end to end: tokenbrokerd over real TLS with client
// certificates (mTLS) from the test's own CA, static bearer tokens, and
// Kubernetes-shaped service-account JWTs checked against a JWKS served over
// HTTPS; a per-caller policy; the audit trail; and a sweep of everything the
// broker wrote (log, /metrics, audit table) for every secret the test used.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/files.h"
#include "tests/support/daemon.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"
#include "tests/support/jwt_issuer.h"

namespace tokenbroker {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClientSecret[] = "sec-e2e-Client-S3cret~value";
constexpr char kIssuer[] = "https://kubernetes.default.svc.cluster.local";
constexpr char kSvcA[] = "spiffe://tokenbroker.test/ns/mail/sa/svc-a";

// The Kubernetes API server's JWKS endpoint, as far as the broker sees it.
class JwksEndpoint final : public HttpClient {
 public:
  explicit JwksEndpoint(std::string jwks) : jwks_(std::move(jwks)) {}
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    HttpResponse response;
    response.status = absl::EndsWith(request.url, "/openid/v1/jwks") && request.method == "GET" ? 200 : 404;
    response.headers["content-type"] = "application/json";
    response.body = response.status == 200 ? jwks_ : "{}";
    absl::MutexLock lock(&mu_);
    ++fetches_;
    return response;
  }
  int fetches() {
    absl::MutexLock lock(&mu_);
    return fetches_;
  }

 private:
  const std::string jwks_;
  absl::Mutex mu_;
  int fetches_ ABSL_GUARDED_BY(mu_) = 0;
};

class SecurityE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = testing::MakeCertificateAuthority(dir_, "ca");
    other_ca_ = testing::MakeCertificateAuthority(dir_, "other-ca");
    server_cert_ = testing::MakeSignedCertificate(dir_, "broker", ca_, "IP:127.0.0.1", false);
    svc_a_ = testing::MakeSignedCertificate(dir_, "svc-a", ca_, absl::StrCat("URI:", kSvcA), true);
    svc_unknown_ = testing::MakeSignedCertificate(dir_, "svc-unknown", ca_, "DNS:unknown.mail.svc", true);
    foreign_ = testing::MakeSignedCertificate(dir_, "svc-foreign", other_ca_, absl::StrCat("URI:", kSvcA), true);

    ASSERT_TRUE(idp_server_.Start(server_cert_.certificate, server_cert_.private_key).ok());
    authority_ = absl::StrCat("127.0.0.1:", idp_server_.port());
    idp_.SetHost(authority_);
    idp_.RegisterApp(kTenant, "client-1", kClientSecret);
    ASSERT_TRUE(jwks_server_.Start(server_cert_.certificate, server_cert_.private_key).ok());

    ops_token_ = "ops-" + std::string(40, 'x') + "-0f3e2d1c";
    auditor_token_ = "auditor-" + std::string(40, 'y') + "-9a8b7c6d";
    secrets_ = {kClientSecret, ops_token_, auditor_token_, Pem(server_cert_.private_key), Pem(svc_a_.private_key)};
    ops_file_ = dir_.WriteFile("ops.token", ops_token_ + "\n");
    auditor_file_ = dir_.WriteFile("auditor.token", auditor_token_ + "\n");
    config_path_ = dir_.WriteFile("broker.yaml", Config(""));
    daemon_ = testing::StartDaemon(config_path_, dir_.path());
    ASSERT_FALSE(daemon_.grpc_address.empty());

    const std::string secret = dir_.WriteFile("client-secret", kClientSecret);
    MustCtl(Ops(),
            {"app", "create", "contoso", "--provider", "microsoft", "--tenant", kTenant, "--client-id", "client-1",
             "--authority-host", authority_, "--client-secret-file", secret, "--not-after", "2099-01-01"});
    MustCtl(Ops(), {"grant", "create", "grant-a", "--app", "contoso", "--mailbox", "a@contoso.com"});
    MustCtl(Ops(), {"grant", "create", "grant-b", "--app", "contoso", "--mailbox", "b@contoso.com", "--label",
                    "team=reporting"});
  }

  void TearDown() override {
    if (daemon_.process == nullptr) return;
    // The sweep: every secret the test used, in everything the broker wrote.
    CommandResult audit = Ctl(Ops(), {"--output", "json", "audit", "list", "--limit", "1000"});
    EXPECT_EQ(audit.exit_code, 0) << audit.err;
    const std::string metrics = testing::HttpGet(daemon_.metrics_address, "/metrics").value_or("");
    EXPECT_THAT(metrics, HasSubstr("tokenbroker_calls_refused_total"));
    EXPECT_EQ(daemon_.Stop(), 0);
    const std::string log = daemon_.process->Stderr();
    EXPECT_THAT(log, HasSubstr("\"msg\":\"audit\""));
    for (const std::string& secret : secrets_) {
      ASSERT_FALSE(secret.empty());
      EXPECT_THAT(log, Not(HasSubstr(secret))) << "in the log";
      EXPECT_THAT(metrics, Not(HasSubstr(secret))) << "in /metrics";
      EXPECT_THAT(audit.out, Not(HasSubstr(secret))) << "in the audit trail";
    }
  }

  // The key's base64 body (a line of it is enough to find a leak).
  static std::string Pem(const std::string& path) {
    std::vector<std::string> lines = absl::StrSplit(testing::ReadFile(path), '\n');
    return lines.size() > 2 ? lines[1] : "";
  }

  std::string Config(const std::string& extra_rules) {
    const std::string tls =
        absl::StrCat("  tls:\n    certificate_file: \"", server_cert_.certificate, "\"\n    private_key_file: \"",
                     server_cert_.private_key, "\"\n    client_ca_file: \"", ca_.certificate, "\"\n");
    const std::string auth = absl::StrCat(
        "auth:\n  bearer_tokens:\n    - {identity: ops, token_file: \"", ops_file_, "\"}\n",
        "    - {identity: auditor, token_file: \"", auditor_file_, "\"}\n", "  service_account_tokens:\n    issuer: \"",
        kIssuer, "\"\n    audiences: [tokenbroker]\n", "    jwks_url: \"https://127.0.0.1:", jwks_server_.port(),
        "/openid/v1/jwks\"\n    jwks_ca_file: \"", ca_.certificate, "\"\n",
        "  groups:\n    - {name: admins, members: [ops]}\n", "  rules:\n", "    - {name: svc-a, callers: [\"", kSvcA,
        "\"], actions: [token.get], grants: [grant-a]}\n",
        "    - {name: reporting, callers: [\"system:serviceaccount:mail:*\"], actions: [token.get],",
        " grant_labels: {team: reporting}}\n",
        "    - {name: admins, callers: [\"group:admins\"], actions: [\"*\"], grants: [\"*\"]}\n",
        "    - {name: auditors, callers: [auditor], actions: [admin.read], grants: [\"*\"]}\n", extra_rules);
    return absl::StrReplaceAll(testing::DaemonConfig(dir_, "  create_if_missing: true\n" + auth),
                               {{"  plaintext: true\n", tls}}) +
           absl::StrCat("declarations_check_interval: 1s\nhttp:\n  ca_file: \"", ca_.certificate, "\"\n");
  }

  std::vector<std::string> Tls() { return {"--ca-file", ca_.certificate}; }
  std::vector<std::string> Ops() { return {"--ca-file", ca_.certificate, "--token-file", ops_file_}; }
  std::vector<std::string> Auditor() { return {"--ca-file", ca_.certificate, "--token-file", auditor_file_}; }
  std::vector<std::string> Cert(const testing::CertificateFiles& c) {
    return {"--ca-file", ca_.certificate, "--cert-file", c.certificate, "--key-file", c.private_key};
  }
  std::vector<std::string> Jwt(const std::string& jwt) {
    secrets_.push_back(jwt);
    return {"--ca-file", ca_.certificate, "--token-file", dir_.WriteFile("sa-" + std::to_string(jwts_++), jwt)};
  }
  std::string ServiceAccountToken(const std::string& aud, absl::Duration lifetime, absl::Time issued = absl::Now()) {
    return issuer_.ServiceAccountToken(kIssuer, "mail", "reporter", {aud}, issued, lifetime);
  }

  CommandResult Ctl(std::vector<std::string> flags, const std::vector<std::string>& args) {
    flags.insert(flags.end(), args.begin(), args.end());
    return testing::Ctl(daemon_.grpc_address, flags);
  }
  CommandResult MustCtl(std::vector<std::string> flags, const std::vector<std::string>& args) {
    CommandResult r = Ctl(std::move(flags), args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }
  std::string Token(std::vector<std::string> flags, const std::string& grant) {
    CommandResult r = MustCtl(std::move(flags), {"token", "get", grant});
    std::string token = r.out.substr(0, r.out.find('\n'));
    if (!token.empty()) secrets_.push_back(token);
    return token;
  }

  testing::TempDir dir_;
  testing::CertificateFiles ca_, other_ca_, server_cert_, svc_a_, svc_unknown_, foreign_;
  testing::FakeMicrosoft idp_{SystemClock::Get()};
  testing::HttpsServer idp_server_{idp_, ""};
  testing::JwtIssuer issuer_{dir_, "sa-key-1", "rsa"};
  JwksEndpoint jwks_{issuer_.Jwks()};
  testing::HttpsServer jwks_server_{jwks_, ""};
  std::string authority_, ops_token_, auditor_token_, ops_file_, auditor_file_, config_path_;
  std::vector<std::string> secrets_;
  int jwts_ = 0;
  testing::RunningDaemon daemon_;
};

TEST_F(SecurityE2ETest, EachCallerGetsWhatThePolicyAllowsAndEveryRefusalIsAudited) {
  // A client certificate for service A: A's token, not B's, and the refusal
  // never reaches the identity provider.
  const std::string a = Token(Cert(svc_a_), "grant-a");
  EXPECT_EQ(idp_.UserOfAccessToken(a), "app:client-1");
  const int requests = idp_.requests();
  CommandResult refused = Ctl(Cert(svc_a_), {"token", "get", "grant-b"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr(absl::StrCat("PERMISSION_DENIED: caller \"", kSvcA,
                                                  "\" may not token.get on grant \"grant-b\"")));
  EXPECT_EQ(idp_.requests(), requests);

  // A certificate from our CA whose name no rule mentions: refused.
  EXPECT_THAT(Ctl(Cert(svc_unknown_), {"token", "get", "grant-a"}).err,
              HasSubstr("PERMISSION_DENIED: caller \"dns:unknown.mail.svc\""));
  // No certificate and no token: UNAUTHENTICATED.
  CommandResult anonymous = Ctl(Tls(), {"token", "get", "grant-a"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("UNAUTHENTICATED: no caller identity"));
  // A certificate from another CA, even naming service A: no handshake.
  CommandResult foreign = Ctl(Cert(foreign_), {"token", "get", "grant-a"});
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_THAT(foreign.err, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(idp_.requests(), requests);

  // A service-account token: allowed by the grant's label.
  const std::string b = Token(Jwt(ServiceAccountToken("tokenbroker", absl::Hours(1))), "grant-b");
  EXPECT_EQ(idp_.UserOfAccessToken(b), "app:client-1");
  EXPECT_THAT(Ctl(Jwt(ServiceAccountToken("tokenbroker", absl::Hours(1))), {"token", "get", "grant-a"}).err,
              HasSubstr("PERMISSION_DENIED: caller \"system:serviceaccount:mail:reporter\""));
  // Expired, or for another audience: UNAUTHENTICATED.
  CommandResult expired = Ctl(Jwt(ServiceAccountToken("tokenbroker", absl::Minutes(10), absl::Now() - absl::Hours(1))),
                              {"token", "get", "grant-b"});
  EXPECT_THAT(expired.err, HasSubstr("UNAUTHENTICATED: service-account token refused: the token has expired"));
  CommandResult wrong_audience = Ctl(Jwt(ServiceAccountToken("vault", absl::Hours(1))), {"token", "get", "grant-b"});
  EXPECT_THAT(wrong_audience.err, HasSubstr("UNAUTHENTICATED: service-account token refused: the token's audience"));
  EXPECT_EQ(jwks_.fetches(), 1);  // cached
  const int after_tokens = idp_.requests();

  // The auditor reads but may not change anything.
  MustCtl(Auditor(), {"grant", "show", "grant-a"});
  CommandResult disable = Ctl(Auditor(), {"grant", "disable", "grant-a"});
  EXPECT_EQ(disable.exit_code, 1);
  EXPECT_THAT(disable.err, HasSubstr("PERMISSION_DENIED: caller \"auditor\" may not admin.write on grant \"grant-a\""));
  EXPECT_EQ(Token(Cert(svc_a_), "grant-a"), a);  // still active, still cached
  EXPECT_EQ(idp_.requests(), after_tokens);

  // Every refusal is in the audit trail, with who, what and which grant.
  CommandResult denied = MustCtl(Auditor(), {"--output", "json", "audit", "list", "--result", "PERMISSION_DENIED"});
  EXPECT_THAT(denied.out, HasSubstr(absl::StrCat("\"caller\": \"", kSvcA, "\"")));
  EXPECT_THAT(denied.out, HasSubstr("\"caller\": \"auditor\""));
  EXPECT_THAT(denied.out, HasSubstr("\"action\": \"admin.write\""));
  EXPECT_THAT(denied.out, HasSubstr("\"method\": \"AdminService/DisableGrant\""));
  EXPECT_THAT(denied.out, HasSubstr("\"caller\": \"system:serviceaccount:mail:reporter\""));
  CommandResult unauthenticated =
      MustCtl(Auditor(), {"--output", "json", "audit", "list", "--result", "UNAUTHENTICATED"});
  EXPECT_THAT(unauthenticated.out, HasSubstr("the token has expired"));
  EXPECT_THAT(unauthenticated.out, HasSubstr("no caller identity"));
  // And what was given: the tokens, by caller.
  CommandResult issued =
      MustCtl(Auditor(), {"--output", "json", "audit", "list", "--caller", kSvcA, "--result", "OK", "--since", "1h"});
  EXPECT_THAT(issued.out, HasSubstr("\"grant\": \"grant-a\""));
  EXPECT_THAT(issued.out, Not(HasSubstr("grant-b")));
}

TEST_F(SecurityE2ETest, ThePolicyReloadsWithTheConfigurationFile) {
  EXPECT_THAT(Ctl(Cert(svc_a_), {"token", "get", "grant-b"}).err, HasSubstr("PERMISSION_DENIED"));
  // A broken file keeps the running policy.
  ASSERT_TRUE(WriteFileAtomically(config_path_, "server: [not valid\n", 0600).ok());
  ASSERT_TRUE(daemon_.process
                  ->WaitForStderrLine(
                      [](const std::string& l) { return absl::StrContains(l, "the running policy stays in use"); },
                      absl::Seconds(30))
                  .has_value());
  EXPECT_EQ(Token(Cert(svc_a_), "grant-a").empty(), false);
  // A valid change takes effect without a restart.
  ASSERT_TRUE(WriteFileAtomically(config_path_,
                                  Config(absl::StrCat("    - {name: svc-a-b, callers: [\"", kSvcA,
                                                      "\"], actions: [token.get], grants: [grant-b]}\n")),
                                  0600)
                  .ok());
  ASSERT_TRUE(
      daemon_.process
          ->WaitForStderrLine([](const std::string& l) { return absl::StrContains(l, "auth configuration reloaded"); },
                              absl::Seconds(30))
          .has_value());
  EXPECT_EQ(Token(Cert(svc_a_), "grant-b").empty(), false);
}

}  // namespace
}  // namespace tokenbroker
