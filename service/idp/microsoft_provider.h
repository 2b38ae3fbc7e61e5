// MicrosoftProvider: the Microsoft identity platform's v2.0 token endpoint,
// https://{authority_host}/{tenant}/oauth2/v2.0/token. Client credentials
// (app-only), refresh-token (delegated), authorization-code (with PKCE) and
// device-code grants, authenticated with a client secret (form or HTTP Basic)
// or a certificate assertion (PS256 with x5t#S256 by default, RS256
// with x5t per app; a fresh assertion per request). Thread-safe.
#ifndef TOKENBROKER_SERVICE_IDP_MICROSOFT_PROVIDER_H_
#define TOKENBROKER_SERVICE_IDP_MICROSOFT_PROVIDER_H_

#include "absl/status/statusor.h"
#include "service/common/clock.h"
#include "service/http/http_client.h"
#include "service/idp/provider.h"

namespace tokenbroker {

class MicrosoftProvider final : public IdentityProvider {
 public:
  MicrosoftProvider(HttpClient& http, const Clock& clock) : http_(http), clock_(clock) {}
  TokenReply RequestToken(const TokenRequest& request) override;
  absl::StatusOr<std::string> AuthorizationUrl(const App& app, const Grant& grant,
                                               const AuthorizationUrlRequest& request) override;
  DeviceAuthorizationReply StartDeviceAuthorization(const TokenRequest& request) override;
  // The client-credentials request names no mailbox.
  bool AppOnlyTokenIsPerApp() const override { return true; }

  static std::string TokenUrl(const App& app);
  // https://{authority_host}/{tenant}/oauth2/v2.0/{endpoint}
  static std::string EndpointUrl(const App& app, absl::string_view endpoint);

 private:
  HttpClient& http_;
  const Clock& clock_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_MICROSOFT_PROVIDER_H_
