#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/authz/authorizer.h"
#include "service/authz/caller_identity.h"
#include "service/authz/policy.h"
#include "service/authz/rate_limiter.h"
#include "service/authz/service_account_tokens.h"
#include "service/common/clock.h"
#include "service/config/config_loader.h"
#include "service/crypto/jwt.h"
#include "tests/support/jwt_issuer.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

config::v1::AuthConfig Auth(const std::string& yaml) {
  absl::StatusOr<Config> config = ParseConfig(
      "server: {grpc_address: \"127.0.0.1:0\", plaintext: true}\nstore: {sqlite: {path: x}}\nkeys: {keyring_file: "
      "k}\n" +
          yaml,
      "test.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? config->auth() : config::v1::AuthConfig();
}

TEST(GlobTest, StarMatchesAnyRun) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("team-a-*", "team-a-sales"));
  EXPECT_FALSE(GlobMatch("team-a-*", "team-b-sales"));
  EXPECT_TRUE(GlobMatch("spiffe://cluster.local/ns/mail/*", "spiffe://cluster.local/ns/mail/sa/reader"));
  EXPECT_TRUE(GlobMatch("*-reader-*", "x-reader-y"));
  EXPECT_FALSE(GlobMatch("exact", "exact-not"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXbYY"));
  // No exponential blow-up on hostile patterns.
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*b", std::string(10000, 'a')));
}

TEST(PolicyTest, DefaultDenyAndFirstMatchingRuleWins) {
  absl::StatusOr<Policy> policy = Policy::Create(Auth(R"(auth:
  groups:
    - name: readers
      members: ["spiffe://test/ns/mail/*", "dns:reader.example"]
  rules:
    - name: readers-get-tokens
      callers: ["group:readers"]
      actions: [token.get, mail.read]
      grants: ["shared-*"]
      rate_limit: {per_second: 2}
    - name: team-by-label
      callers: ["svc-team"]
      actions: [token.get]
      grant_labels: {team: sales}
    - name: ops
      callers: [ops]
      actions: ["*"]
      grants: ["*"]
)"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  Resource shared{"shared-inbox"};
  PolicyDecision d = policy->Evaluate("spiffe://test/ns/mail/sa/reader", Action::kTokenGet, shared);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule_name, "readers-get-tokens");
  ASSERT_TRUE(d.rate_limit.has_value());
  EXPECT_EQ(d.rate_limit->burst, 2);
  EXPECT_FALSE(policy->Evaluate("spiffe://test/ns/mail/sa/reader", Action::kAdminWrite, shared).allowed);
  EXPECT_FALSE(policy->Evaluate("spiffe://test/ns/other/sa/reader", Action::kTokenGet, shared).allowed);
  EXPECT_FALSE(policy->Evaluate("dns:reader.example", Action::kTokenGet, Resource{"private-inbox"}).allowed);
  // The broker as a whole needs grants: ["*"].
  EXPECT_FALSE(policy->Evaluate("dns:reader.example", Action::kTokenGet, Resource{""}).allowed);
  EXPECT_TRUE(policy->Evaluate("ops", Action::kAdminWrite, Resource{""}).allowed);
  EXPECT_FALSE(policy->Evaluate("", Action::kTokenGet, shared).allowed);

  // Labels decide only when given.
  EXPECT_TRUE(policy->NeedsLabels("svc-team", Action::kTokenGet));
  EXPECT_FALSE(policy->NeedsLabels("ops", Action::kTokenGet));
  std::map<std::string, std::string> sales = {{"team", "sales"}, {"env", "prod"}};
  std::map<std::string, std::string> hr = {{"team", "hr"}};
  EXPECT_FALSE(policy->Evaluate("svc-team", Action::kTokenGet, Resource{"g1"}).allowed);
  EXPECT_TRUE(policy->Evaluate("svc-team", Action::kTokenGet, Resource{"g1", &sales}).allowed);
  EXPECT_FALSE(policy->Evaluate("svc-team", Action::kTokenGet, Resource{"g1", &hr}).allowed);
  EXPECT_FALSE(policy->Evaluate("svc-team", Action::kMailRead, Resource{"g1", &sales}).allowed);
}

TEST(PolicyTest, MistakesAreNamed) {
  auto error = [](const std::string& yaml) { return std::string(Policy::Create(Auth(yaml)).status().message()); };
  EXPECT_THAT(error("auth:\n  rules:\n    - {callers: [a], actions: [token.gte], grants: [\"*\"]}\n"),
              HasSubstr("auth.rules[0] (rule-0).actions: unknown action \"token.gte\""));
  EXPECT_THAT(error("auth:\n  rules:\n    - {callers: [\"group:nope\"], actions: [token.get], grants: [x]}\n"),
              HasSubstr("no group named \"nope\""));
  EXPECT_THAT(error("auth:\n  rules:\n    - {name: r, callers: [a], actions: [token.get]}\n"),
              HasSubstr("auth.rules[0] (r): set grants"));
  EXPECT_THAT(error("auth:\n  rules:\n    - {callers: [a], actions: [token.get], grants: [x], rate_limit: "
                    "{per_second: 0}}\n"),
              HasSubstr("rate_limit.per_second: must be above 0"));
}

TEST(RateLimiterTest, BucketsRefillWithTheClock) {
  FakeClock clock;
  RateLimiter limiter(clock);
  const RateLimitRule limit{2, 3};  // 2/s, burst 3
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("r", "a", limit), absl::ZeroDuration());
  EXPECT_EQ(limiter.Take("r", "a", limit), absl::Milliseconds(500));
  // Another caller has its own bucket.
  EXPECT_EQ(limiter.Take("r", "b", limit), absl::ZeroDuration());
  clock.Advance(absl::Milliseconds(500));
  EXPECT_EQ(limiter.Take("r", "a", limit), absl::ZeroDuration());
  EXPECT_GT(limiter.Take("r", "a", limit), absl::ZeroDuration());
  clock.Advance(absl::Hours(1));  // never more than the burst
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Take("r", "a", limit), absl::ZeroDuration());
  EXPECT_GT(limiter.Take("r", "a", limit), absl::ZeroDuration());
}

class FakeJwks final : public JwksSource {
 public:
  absl::StatusOr<std::string> Fetch() override {
    ++fetches;
    if (down) return absl::UnavailableError("JWKS endpoint down");
    return jwks;
  }
  std::string jwks;
  bool down = false;
  int fetches = 0;
};

class ServiceAccountTokenTest : public ::testing::Test {
 protected:
  static constexpr char kIssuer[] = "https://kubernetes.default.svc.cluster.local";
  ServiceAccountTokenTest() {
    auto source = std::make_unique<FakeJwks>();
    jwks_ = source.get();
    jwks_->jwks = rsa_.Jwks();
    ServiceAccountTokenOptions options;
    options.issuer = kIssuer;
    options.audiences = {"tokenbroker"};
    verifier_ = std::make_unique<ServiceAccountTokenVerifier>(options, std::move(source), clock_);
  }
  std::string Token(const testing::JwtIssuer& issuer, std::vector<std::string> aud = {"tokenbroker"},
                    absl::Duration lifetime = absl::Hours(1), const std::string& iss = kIssuer) {
    return issuer.ServiceAccountToken(iss, "mail", "reader", aud, clock_.Now(), lifetime);
  }

  testing::TempDir dir_;
  testing::JwtIssuer rsa_{dir_, "rsa-1", "rsa"};
  testing::JwtIssuer ec_{dir_, "ec-1", "ec"};
  FakeClock clock_{absl::Now()};
  FakeJwks* jwks_;
  std::unique_ptr<ServiceAccountTokenVerifier> verifier_;
};

TEST_F(ServiceAccountTokenTest, AValidTokenNamesTheServiceAccount) {
  absl::StatusOr<std::string> sub = verifier_->Verify(Token(rsa_, {"other", "tokenbroker"}));
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(*sub, "system:serviceaccount:mail:reader");
}

TEST_F(ServiceAccountTokenTest, ExpiredWrongAudienceWrongIssuerAndForgedTokensAreRefused) {
  auto refused = [&](const std::string& token) {
    absl::StatusOr<std::string> sub = verifier_->Verify(token);
    EXPECT_EQ(sub.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(sub.status().message()), ::testing::Not(HasSubstr(token.substr(0, 20))));
    return std::string(sub.status().message());
  };
  const std::string old = Token(rsa_, {"tokenbroker"}, absl::Minutes(10));
  clock_.Advance(absl::Minutes(11));  // past exp + 30s leeway
  EXPECT_THAT(refused(old), HasSubstr("expired"));
  EXPECT_THAT(refused(Token(rsa_, {"someone-else"})), HasSubstr("audience"));
  EXPECT_THAT(refused(Token(rsa_, {"tokenbroker"}, absl::Hours(1), "https://evil.example")), HasSubstr("issuer"));
  // Same kid, another key: the signature does not verify.
  testing::JwtIssuer forger(dir_, "rsa-1", "rsa");
  EXPECT_THAT(refused(Token(forger)), HasSubstr("signature"));
  // Claims changed after signing.
  std::string token = Token(rsa_);
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  parts[1] = Base64Url(
      R"({"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:kube-system:admin","aud":["tokenbroker"],"exp":9999999999})");
  EXPECT_THAT(refused(absl::StrJoin(parts, ".")), HasSubstr("signature"));
  // alg none, or HS256 with the public key as secret.
  parts[0] = Base64Url(R"({"alg":"none","kid":"rsa-1"})");
  EXPECT_THAT(refused(absl::StrJoin(parts, ".")), HasSubstr("algorithm"));
  EXPECT_THAT(refused("not.a.jwt"), HasSubstr("not a JWT"));
}

TEST_F(ServiceAccountTokenTest, ES256KeysAndKeyRotationAreFollowed) {
  // A token from a key not in the JWKS yet: fetched again at once.
  const std::string ec_token = Token(ec_);
  ASSERT_TRUE(verifier_->Verify(Token(rsa_)).ok());
  EXPECT_EQ(jwks_->fetches, 1);
  jwks_->jwks = ec_.Jwks();
  absl::StatusOr<std::string> sub = verifier_->Verify(ec_token);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(jwks_->fetches, 2);
  // Unknown key ids do not make the verifier fetch more than every 10 s.
  testing::JwtIssuer stranger(dir_, "stranger", "rsa");
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(verifier_->Verify(Token(stranger)).ok());
  EXPECT_EQ(jwks_->fetches, 2);
  // The keys are refreshed after the interval; while the endpoint is down the
  // keys fetched before keep working.
  clock_.Advance(absl::Minutes(6));
  jwks_->down = true;
  EXPECT_TRUE(verifier_->Verify(Token(ec_)).ok());
  EXPECT_EQ(jwks_->fetches, 3);
}

TEST_F(ServiceAccountTokenTest, NoKeysAtAllIsUnavailable) {
  jwks_->down = true;
  EXPECT_EQ(verifier_->Verify(Token(rsa_)).status().code(), absl::StatusCode::kUnavailable);
}

TEST(CertificateIdentityTest, SpiffeThenDnsThenCommonName) {
  testing::TempDir dir;
  testing::CertificateFiles ca = testing::MakeCertificateAuthority(dir, "ca");
  auto identity = [&](const std::string& name, const std::string& san) {
    testing::CertificateFiles c = testing::MakeSignedCertificate(dir, name, ca, san, true);
    absl::StatusOr<std::string> id = CertificateIdentity(testing::ReadFile(c.certificate));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  };
  EXPECT_EQ(identity("svc-a", "DNS:svc-a.mail.svc,URI:spiffe://cluster.local/ns/mail/sa/svc-a"),
            "spiffe://cluster.local/ns/mail/sa/svc-a");
  EXPECT_EQ(identity("svc-b", "DNS:svc-b.mail.svc,URI:https://not-spiffe.example"), "dns:svc-b.mail.svc");
  EXPECT_EQ(identity("svc-c", ""), "cn:svc-c");
  EXPECT_FALSE(CertificateIdentity("not a certificate").ok());
}

TEST(IdentityResolverTest, BearerTokensLocalCallersAndNothing) {
  testing::TempDir dir;
  const std::string token = "3f9c1a7be2d54c08a6e1f0b9d27c4e5a";
  const std::string yaml =
      absl::StrCat("auth:\n  local_caller: local\n  bearer_tokens:\n    - {identity: ci, token_file: \"",
                   dir.WriteFile("ci.token", token + "\n"), "\"}\n");
  absl::StatusOr<std::unique_ptr<IdentityResolver>> resolver = IdentityResolver::Create(Auth(yaml), SystemClock::Get());
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  const std::string header = "Bearer " + token;
  absl::StatusOr<CallerIdentity> ci = (*resolver)->Resolve({header, "", false});
  ASSERT_TRUE(ci.ok()) << ci.status();
  EXPECT_EQ(ci->name, "ci");
  EXPECT_EQ(ci->method, "bearer");
  EXPECT_EQ((*resolver)->Resolve({"bearer " + token, "", false})->name, "ci");

  absl::StatusOr<CallerIdentity> wrong = (*resolver)->Resolve({"Bearer " + token + "x", "", true});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(wrong.status().message()), ::testing::Not(HasSubstr(token)));
  EXPECT_EQ((*resolver)->Resolve({"Basic Zm9vOmJhcg==", "", true}).status().code(), absl::StatusCode::kUnauthenticated);
  // Local only on the plaintext (loopback) listener.
  EXPECT_EQ((*resolver)->Resolve({"", "", true})->name, "local");
  EXPECT_EQ((*resolver)->Resolve({"", "", false}).status().code(), absl::StatusCode::kUnauthenticated);

  // A token file with a short token is refused at start.
  const std::string short_yaml = absl::StrCat("auth:\n  bearer_tokens:\n    - {identity: ci, token_file: \"",
                                              dir.WriteFile("short.token", "abc"), "\"}\n");
  EXPECT_THAT(std::string(IdentityResolver::Create(Auth(short_yaml), SystemClock::Get()).status().message()),
              HasSubstr("auth.bearer_tokens[0].token_file: the token must be at least 32 characters"));
}

TEST(AuthorizerTest, LabelsAreLookedUpOnlyWhenNeededAndRateLimitsAnswerWithAWait) {
  FakeClock clock;
  config::v1::AuthConfig auth = Auth(R"(auth:
  local_caller: app
  rules:
    - {callers: [app], actions: [token.get], grants: [fixed], rate_limit: {per_second: 1, burst: 1}}
    - {callers: [app], actions: [token.get], grant_labels: {team: sales}}
)");
  auto built = Authorizer::Build(auth, clock);
  ASSERT_TRUE(built.ok()) << built.status();
  int lookups = 0;
  Authorizer authorizer(
      std::move(built->first), std::move(built->second),
      [&](absl::string_view grant) -> absl::StatusOr<std::map<std::string, std::string>> {
        ++lookups;
        if (grant == "labelled") return std::map<std::string, std::string>{{"team", "sales"}};
        return absl::NotFoundError("no grant");
      },
      clock);
  CallerIdentity app = *authorizer.Authenticate({"", "", true});
  EXPECT_TRUE(authorizer.Authorize(app, Action::kTokenGet, "fixed").status.ok());
  EXPECT_EQ(lookups, 0);
  Authorization limited = authorizer.Authorize(app, Action::kTokenGet, "fixed");
  EXPECT_EQ(limited.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(limited.retry_after, absl::Seconds(1));
  EXPECT_THAT(std::string(limited.status.message()), HasSubstr("retry after 1000ms"));

  EXPECT_TRUE(authorizer.Authorize(app, Action::kTokenGet, "labelled").status.ok());
  EXPECT_TRUE(authorizer.Authorize(app, Action::kTokenGet, "labelled").status.ok());
  EXPECT_EQ(lookups, 1);  // cached
  authorizer.ForgetGrant("labelled");
  EXPECT_TRUE(authorizer.Authorize(app, Action::kTokenGet, "labelled").status.ok());
  EXPECT_EQ(lookups, 2);
  Authorization denied = authorizer.Authorize(app, Action::kTokenGet, "unknown");
  EXPECT_EQ(denied.status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.status.message()), HasSubstr("caller \"app\" may not token.get on grant \"unknown\""));
  EXPECT_EQ(lookups, 3);
  // Labels at hand (a list being filtered) are used as they are: no lookup.
  const std::map<std::string, std::string> sales{{"team", "sales"}}, other{{"team", "other"}};
  EXPECT_TRUE(authorizer.Allows(app, Action::kTokenGet, "listed", &sales));
  EXPECT_FALSE(authorizer.Allows(app, Action::kTokenGet, "labelled", &other));
  EXPECT_EQ(lookups, 3);
}

}  // namespace
}  // namespace tokenbroker
