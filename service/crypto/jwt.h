// Signing JWTs for client assertions (Microsoft certificate credentials, OIDC
// private_key_jwt, Google service accounts). Pure functions; thread-safe.
#ifndef TOKENBROKER_SERVICE_CRYPTO_JWT_H_
#define TOKENBROKER_SERVICE_CRYPTO_JWT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/common/secret.h"

namespace tokenbroker {

enum class JwtAlgorithm { kRs256, kPs256 };

// base64url without padding.
std::string Base64Url(absl::string_view data);

// header.claims.signature, signing base64url(header_json) + "." +
// base64url(claims_json) with the RSA private key in `key_pem`. The header's
// "alg" must match `algorithm` (the caller writes the JSON). The result is a
// credential: treat it as a secret.
absl::StatusOr<Secret> SignJwt(absl::string_view header_json, absl::string_view claims_json, JwtAlgorithm algorithm,
                               const Secret& key_pem);

// Verifies a JWT's signature with the public key of `certificate_pem` (used by
// tests and the Microsoft-shaped test endpoint's checks).
absl::Status VerifyJwt(absl::string_view jwt, JwtAlgorithm algorithm, absl::string_view certificate_pem);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_JWT_H_
