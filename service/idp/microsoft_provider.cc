#include "service/idp/microsoft_provider.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/json.h"
#include "service/crypto/jwt.h"
#include "service/idp/client_assertion.h"
#include "service/idp/oauth_reply.h"

namespace tokenbroker {

std::string MicrosoftProvider::TokenUrl(const App& app) {
  const std::string host = app.authority_host.empty() ? "login.microsoftonline.com" : app.authority_host;
  return absl::StrCat("https://", host, "/", app.tenant, "/oauth2/v2.0/token");
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
    absl::StatusOr<Secret> assertion =
        SignClientAssertion(app, *r.credential, *r.credential_secret, TokenUrl(app), clock_.Now());
    if (!assertion.ok()) return CredentialFailure(assertion.status().message());
    form.emplace_back("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    form.emplace_back("client_assertion", std::string(assertion->Reveal()));
  } else {
    form.emplace_back("client_secret", std::string(r.credential_secret->Reveal()));
  }
  return PostTokenForm(http_, TokenUrl(app), std::move(form), clock_.Now());
}

}  // namespace tokenbroker
