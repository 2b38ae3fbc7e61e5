#include "service/idp/google_provider.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/json.h"
#include "service/crypto/certificate.h"
#include "service/crypto/jwt.h"
#include "service/idp/oauth_reply.h"

namespace tokenbroker {

std::string GoogleProvider::TokenUrl(const App& app) {
  return app.token_endpoint.empty() ? "https://oauth2.googleapis.com/token" : app.token_endpoint;
}

absl::StatusOr<Secret> GoogleProvider::ServiceAccountAssertion(const App& app, const Grant& grant,
                                                               const Secret& key_json, absl::Time now) {
  absl::StatusOr<ServiceAccountKey> key = ParseServiceAccountKey(key_json);
  if (!key.ok()) return key.status();
  const std::string header = absl::StrCat(R"({"alg":"RS256","typ":"JWT","kid":)", JsonQuote(key->private_key_id), "}");
  const int64_t iat = absl::ToUnixSeconds(now);
  const std::string claims = absl::StrCat(
      "{\"iss\":", JsonQuote(key->client_email), ",\"sub\":", JsonQuote(grant.subject.empty() ? grant.mailbox : grant.subject),
      ",\"scope\":", JsonQuote(absl::StrJoin(grant.scopes, " ")), ",\"aud\":", JsonQuote(TokenUrl(app)),
      ",\"iat\":", iat, ",\"exp\":", iat + 3600, "}");
  return SignJwt(header, claims, JwtAlgorithm::kRs256, key->private_key_pem);
}

TokenReply GoogleProvider::RequestToken(const TokenRequest& r) {
  std::vector<std::pair<std::string, std::string>> form;
  if (r.grant->kind == GrantKind::kServiceAccount) {
    if (r.credential->kind != CredentialKind::kServiceAccountKey) {
      return CredentialFailure("service-account grants need a service-account key credential");
    }
    absl::StatusOr<Secret> assertion = ServiceAccountAssertion(*r.app, *r.grant, *r.credential_secret, clock_.Now());
    if (!assertion.ok()) return CredentialFailure(assertion.status().message());
    form = {{"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"},
            {"assertion", std::string(assertion->Reveal())}};
  } else {
    form = {{"grant_type", "refresh_token"},
            {"client_id", r.app->client_id},
            {"client_secret", std::string(r.credential_secret->Reveal())},
            {"refresh_token", r.refresh_token != nullptr ? std::string(r.refresh_token->Reveal()) : ""}};
  }
  TokenReply reply = PostTokenForm(http_, TokenUrl(*r.app), std::move(form), clock_.Now());
  if (!reply.ok() && r.grant->kind == GrantKind::kServiceAccount) {
    // Google's answers for a service account are about its set-up, not about
    // a user's consent.
    if (reply.failure.oauth_error == "unauthorized_client") {
      reply.failure.kind = FailureKind::kAppConfiguration;
      reply.failure.message =
          "Google refused domain-wide delegation: in the Admin console (Security > API controls > Domain-wide "
          "delegation) allow the service account's client id for https://mail.google.com/ (unauthorized_client)";
    } else if (reply.failure.kind == FailureKind::kNeedsReconsent) {
      reply.failure.kind = FailureKind::kAppConfiguration;
      reply.failure.message =
          "Google refused the service-account assertion: check that the subject is a user of the Workspace domain "
          "and this machine's clock (" + reply.failure.oauth_error + ")";
    }
  }
  return reply;
}

}  // namespace tokenbroker
