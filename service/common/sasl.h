// The SASL initial responses that carry an OAuth 2.0 bearer token, built in
// one place and held as Secrets (they contain the token): XOAUTH2 (Google's
// and Microsoft's) and OAUTHBEARER (RFC 7628), base64-encoded as SASL-IR and
// TokenService's sasl_xoauth2 want them. The token is encoded straight from its
// Secret: no plaintext copy of it is made.
#ifndef TOKENBROKER_SERVICE_COMMON_SASL_H_
#define TOKENBROKER_SERVICE_COMMON_SASL_H_

#include <string>

#include "absl/strings/string_view.h"
#include "service/common/secret.h"

namespace tokenbroker {

// base64("user=" USER "\x01auth=Bearer " TOKEN "\x01\x01")
Secret SaslXoauth2(absl::string_view user, const Secret& token);
// The same written into `out` (replacing what it held), for a message field
// that takes it as is: no intermediate copy of the encoded form.
void SaslXoauth2Into(absl::string_view user, const Secret& token, std::string* out);
// base64("n,a=" USER ",\x01host=" HOST "\x01port=" PORT "\x01auth=Bearer " TOKEN
// "\x01\x01"), with ',' and '=' in USER escaped as RFC 5801 says.
Secret SaslOauthbearer(absl::string_view user, absl::string_view host, int port, const Secret& token);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_SASL_H_
