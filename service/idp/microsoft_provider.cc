#include "service/idp/microsoft_provider.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/idp/oauth_reply.h"
#include "service/idp/token_form.h"

namespace tokenbroker {

std::string MicrosoftProvider::EndpointUrl(const App& app, absl::string_view endpoint) {
  const std::string host = app.authority_host.empty() ? "login.microsoftonline.com" : app.authority_host;
  return absl::StrCat("https://", host, "/", app.tenant, "/oauth2/v2.0/", endpoint);
}

std::string MicrosoftProvider::TokenUrl(const App& app) { return EndpointUrl(app, "token"); }

TokenReply MicrosoftProvider::RequestToken(const TokenRequest& r) {
  FormFields form;
  std::vector<std::pair<std::string, std::string>> headers;
  if (auto failed = AuthenticateClient(r, TokenUrl(*r.app), clock_.Now(), form, headers)) return *std::move(failed);
  AppendGrantParameters(r, form);
  return PostTokenForm(http_, TokenUrl(*r.app), std::move(form), clock_.Now(), std::move(headers));
}

absl::StatusOr<std::string> MicrosoftProvider::AuthorizationUrl(const App& app, const Grant& grant,
                                                                const AuthorizationUrlRequest& request) {
  return BuildAuthorizationUrl(EndpointUrl(app, "authorize"), app, grant, request);
}

DeviceAuthorizationReply MicrosoftProvider::StartDeviceAuthorization(const TokenRequest& r) {
  // The devicecode endpoint takes client_id and scope only.
  FormFields form = {{"client_id", r.app->client_id}};
  if (!r.grant->scopes.empty()) form.emplace_back("scope", absl::StrJoin(r.grant->scopes, " "));
  return PostDeviceAuthorization(http_, EndpointUrl(*r.app, "devicecode"), std::move(form), {}, clock_.Now());
}

}  // namespace tokenbroker
