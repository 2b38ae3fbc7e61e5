// Random values and digests for protocol use: PKCE verifiers, OAuth state,
// JWT ids. From OpenSSL's CSPRNG.
#ifndef TOKENBROKER_SERVICE_CRYPTO_RANDOM_H_
#define TOKENBROKER_SERVICE_CRYPTO_RANDOM_H_

#include <string>

#include "absl/strings/string_view.h"

namespace tokenbroker {

// `bytes` random bytes, base64url without padding (32 bytes: 43 characters,
// RFC 7636's recommended code_verifier). Aborts if the system's random
// generator fails: nothing safe can be done without it.
std::string RandomBase64Url(size_t bytes);
// `bytes` random bytes as lower-case hex.
std::string RandomHex(size_t bytes);
// The raw SHA-256 digest of `data`.
std::string Sha256(absl::string_view data);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_RANDOM_H_
