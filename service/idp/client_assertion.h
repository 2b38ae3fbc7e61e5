// Client assertions (RFC 7523, "private_key_jwt"): a JWT signed with a
// certificate credential's key that authenticates the app at a token
// endpoint. Used by Microsoft (certificate credentials) and OIDC providers.
#ifndef TOKENBROKER_SERVICE_IDP_CLIENT_ASSERTION_H_
#define TOKENBROKER_SERVICE_IDP_CLIENT_ASSERTION_H_

#include <string>

#include "absl/status/statusor.h"
#include "service/common/secret.h"
#include "service/store/model.h"

namespace tokenbroker {

// PS256 with the x5t#S256 header by default, RS256 with x5t when the app says
// so. Claims: aud = `audience` (the token endpoint), iss = sub = client id, a
// fresh random jti, nbf = iat = now, exp = now + 10 minutes.
absl::StatusOr<Secret> SignClientAssertion(const App& app, const AppCredential& credential, const Secret& private_key,
                                           absl::string_view audience, absl::Time now);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_CLIENT_ASSERTION_H_
