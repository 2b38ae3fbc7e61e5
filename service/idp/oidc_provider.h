// OidcProvider: any standards-compliant OAuth 2.0 / OpenID Connect provider.
// The token endpoint is the app's explicit one, or read once from
// {issuer}/.well-known/openid-configuration (and checked against the issuer).
// Client credentials (app-only) and refresh-token (delegated) grants;
// client_secret_post for client secrets, private_key_jwt for certificates.
// Thread-safe.
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

  // The app's token endpoint: explicit, or discovered (cached per issuer).
  absl::StatusOr<std::string> TokenEndpoint(const App& app);

 private:
  HttpClient& http_;
  const Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, std::string> discovered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_OIDC_PROVIDER_H_
