#include "service/idp/microsoft_provider.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/json.h"
#include "service/crypto/jwt.h"
#include "service/idp/oauth_reply.h"

namespace tokenbroker {
namespace {

std::string RandomId() {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

}  // namespace

std::string MicrosoftProvider::TokenUrl(const App& app) {
  const std::string host = app.authority_host.empty() ? "login.microsoftonline.com" : app.authority_host;
  return absl::StrCat("https://", host, "/", app.tenant, "/oauth2/v2.0/token");
}

absl::StatusOr<Secret> MicrosoftProvider::ClientAssertion(const App& app, const AppCredential& credential,
                                                          const Secret& private_key, absl::Time now) {
  const bool rs256 = app.assertion_algorithm == AssertionAlgorithm::kRs256;
  const std::string header =
      rs256 ? absl::StrCat(R"({"alg":"RS256","typ":"JWT","x5t":)", JsonQuote(credential.thumbprint_sha1), "}")
            : absl::StrCat(R"({"alg":"PS256","typ":"JWT","x5t#S256":)", JsonQuote(credential.thumbprint_sha256), "}");
  const int64_t iat = absl::ToUnixSeconds(now);
  const std::string claims =
      absl::StrCat("{\"aud\":", JsonQuote(TokenUrl(app)), ",\"iss\":", JsonQuote(app.client_id),
                   ",\"sub\":", JsonQuote(app.client_id), ",\"jti\":", JsonQuote(RandomId()), ",\"nbf\":", iat,
                   ",\"iat\":", iat, ",\"exp\":", iat + 600, "}");
  return SignJwt(header, claims, rs256 ? JwtAlgorithm::kRs256 : JwtAlgorithm::kPs256, private_key);
}

TokenReply MicrosoftProvider::RequestToken(const TokenRequest& r) {
  const App& app = *r.app;
  const Grant& grant = *r.grant;
  std::vector<std::pair<std::string, std::string>> form = {{"client_id", app.client_id}};
  if (grant.kind == GrantKind::kDelegated) {
    form.emplace_back("grant_type", "refresh_token");
    form.emplace_back("refresh_token", std::string(r.refresh_token->Reveal()));
  } else {
    form.emplace_back("grant_type", "client_credentials");
  }
  form.emplace_back("scope", absl::StrJoin(grant.scopes, " "));
  if (r.credential->kind == CredentialKind::kCertificate) {
    absl::StatusOr<Secret> assertion = ClientAssertion(app, *r.credential, *r.credential_secret, clock_.Now());
    if (!assertion.ok()) return CredentialFailure(assertion.status().message());
    form.emplace_back("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    form.emplace_back("client_assertion", std::string(assertion->Reveal()));
  } else {
    form.emplace_back("client_secret", std::string(r.credential_secret->Reveal()));
  }
  return PostTokenForm(http_, TokenUrl(app), std::move(form), clock_.Now());
}

}  // namespace tokenbroker
