// MicrosoftProvider: the Microsoft identity platform's v2.0 token endpoint,
// https://{authority_host}/{tenant}/oauth2/v2.0/token. Client credentials
// (app-only) and refresh-token (delegated) grants, authenticated with a client
// secret or a certificate assertion (PS256 with x5t#S256 by default, RS256
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

  static std::string TokenUrl(const App& app);

 private:
  HttpClient& http_;
  const Clock& clock_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_MICROSOFT_PROVIDER_H_
