// Building requests to an OAuth 2.0 provider: the token request's grant
// parameters (RFC 6749, RFC 7636 PKCE, RFC 8628 device code) and the client's
// authentication (client_secret_post, client_secret_basic, private_key_jwt /
// RFC 7523), the authorization URL, and the device authorization request.
// Shared by the providers; every form that holds a secret is wiped after use.
#ifndef TOKENBROKER_SERVICE_IDP_TOKEN_FORM_H_
#define TOKENBROKER_SERVICE_IDP_TOKEN_FORM_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "service/http/http_client.h"
#include "service/idp/provider.h"

namespace tokenbroker {

using FormFields = std::vector<std::pair<std::string, std::string>>;

// grant_type and its parameters for `r`: authorization_code (code,
// redirect_uri, code_verifier), the device code, refresh_token, or
// client_credentials; then `scope` (the grant's scopes) when there are any.
void AppendGrantParameters(const TokenRequest& r, FormFields& form);

// Authenticates the client with r.credential: a client secret in the form
// (client_secret_post) or in an Authorization header (client_secret_basic,
// when the app says so), or a client assertion whose audience is `audience`
// (the token endpoint). client_id goes in the form except with Basic. A reply
// (a CredentialFailure) when the credential cannot be used.
std::optional<TokenReply> AuthenticateClient(const TokenRequest& r, absl::string_view audience, absl::Time now,
                                             FormFields& form, std::vector<std::pair<std::string, std::string>>& headers);

// endpoint?response_type=code&client_id=..&redirect_uri=..&scope=..&state=..
// &code_challenge=..&code_challenge_method=S256 [&login_hint=..][&prompt=..],
// then `extra`.
std::string BuildAuthorizationUrl(absl::string_view endpoint, const App& app, const Grant& grant,
                                  const AuthorizationUrlRequest& request, const FormFields& extra = {});

// POSTs a device authorization request and reads the answer (RFC 8628 section
// 3.2; Google says verification_url). `form` is wiped.
DeviceAuthorizationReply PostDeviceAuthorization(HttpClient& http, const std::string& url, FormFields form,
                                                 std::vector<std::pair<std::string, std::string>> headers,
                                                 absl::Time now);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_TOKEN_FORM_H_
