// GoogleProvider: Google's OAuth 2.0 token endpoint (default
// https://oauth2.googleapis.com/token; an app's token_endpoint overrides it).
// Service-account grants use domain-wide delegation: an RS256 JWT-bearer
// assertion signed with the service account's key, impersonating the grant's
// subject (iss = client_email, sub = subject, scope, aud = token URL, exp at
// most 1 h). Delegated grants redeem a refresh token (or, during consent, an
// authorization code) with the client secret.
// Thread-safe.
#ifndef TOKENBROKER_SERVICE_IDP_GOOGLE_PROVIDER_H_
#define TOKENBROKER_SERVICE_IDP_GOOGLE_PROVIDER_H_

#include "absl/status/statusor.h"
#include "service/common/clock.h"
#include "service/http/http_client.h"
#include "service/idp/provider.h"

namespace tokenbroker {

class GoogleProvider final : public IdentityProvider {
 public:
  GoogleProvider(HttpClient& http, const Clock& clock) : http_(http), clock_(clock) {}
  TokenReply RequestToken(const TokenRequest& request) override;
  // https://accounts.google.com/o/oauth2/v2/auth with access_type=offline.
  // (Google's device flow does not allow the mail scope, so there is no
  // StartDeviceAuthorization.)
  absl::StatusOr<std::string> AuthorizationUrl(const App& app, const Grant& grant,
                                               const AuthorizationUrlRequest& request) override;

  static std::string TokenUrl(const App& app);
  // The signed JWT-bearer assertion for a service-account grant.
  static absl::StatusOr<Secret> ServiceAccountAssertion(const App& app, const Grant& grant,
                                                        const Secret& key_json, absl::Time now);

 private:
  HttpClient& http_;
  const Clock& clock_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_GOOGLE_PROVIDER_H_
