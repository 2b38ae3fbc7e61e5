#include "service/idp/google_provider.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/json.h"
#include "service/crypto/certificate.h"
#include "service/crypto/jwt.h"
#include "service/idp/oauth_reply.h"
#include "service/idp/token_form.h"

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
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (r.grant->kind != GrantKind::kServiceAccount) {
    if (auto failed = AuthenticateClient(r, TokenUrl(*r.app), clock_.Now(), form, headers)) return *std::move(failed);
    AppendGrantParameters(r, form);
  }
  TokenReply reply = PostTokenForm(http_, TokenUrl(*r.app), std::move(form), clock_.Now(), std::move(headers));
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

absl::StatusOr<std::string> GoogleProvider::AuthorizationUrl(const App& app, const Grant& grant,
                                                             const AuthorizationUrlRequest& request) {
  const std::string endpoint = app.authorization_endpoint.empty() ? "https://accounts.google.com/o/oauth2/v2/auth"
                                                                  : app.authorization_endpoint;
  // Google issues a refresh token only with access_type=offline, and again
  // after the first consent only with prompt=consent.
  AuthorizationUrlRequest with_prompt = request;
  if (with_prompt.prompt.empty()) with_prompt.prompt = "consent";
  return BuildAuthorizationUrl(endpoint, app, grant, with_prompt, {{"access_type", "offline"}});
}

}  // namespace tokenbroker
