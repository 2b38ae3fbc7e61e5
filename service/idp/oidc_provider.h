// OidcProvider: any standards-compliant OAuth 2.0 / OpenID Connect provider.
// Each endpoint (token, authorization, device authorization) is the app's
// explicit one, or read once from {issuer}/.well-known/openid-configuration
// (checked against the issuer). Client credentials (app-only), refresh-token
// (delegated), authorization-code (PKCE S256) and device-code grants;
// client_secret_post (or client_secret_basic per app) for client secrets,
// private_key_jwt for certificates. Thread-safe.
#ifndef TOKENBROKER_SERVICE_IDP_OIDC_PROVIDER_H_
#define TOKENBROKER_SERVICE_IDP_OIDC_PROVIDER_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/http/http_client.h"
#include "service/idp/provider.h"

namespace tokenbroker {

class OidcProvider final : public IdentityProvider {
 public:
  OidcProvider(HttpClient& http, const Clock& clock) : http_(http), clock_(clock) {}
  TokenReply RequestToken(const TokenRequest& request) override;
  absl::StatusOr<std::string> AuthorizationUrl(const App& app, const Grant& grant,
                                               const AuthorizationUrlRequest& request) override;
  DeviceAuthorizationReply StartDeviceAuthorization(const TokenRequest& request) override;
  // The client-credentials request names no mailbox.
  bool AppOnlyTokenIsPerApp() const override { return true; }

  // The app's token endpoint: explicit, or discovered (cached per issuer).
  absl::StatusOr<std::string> TokenEndpoint(const App& app);

 private:
  struct Endpoints {
    std::string token, authorization, device_authorization;
  };
  absl::StatusOr<Endpoints> Discover(const App& app);
  absl::StatusOr<std::string> Endpoint(const App& app, std::string App::*explicit_endpoint,
                                       std::string Endpoints::*discovered, absl::string_view name);

  HttpClient& http_;
  const Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, Endpoints> discovered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_OIDC_PROVIDER_H_
