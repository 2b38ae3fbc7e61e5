#include "service/idp/client_assertion.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "service/common/json.h"
#include "service/crypto/jwt.h"
#include "service/crypto/random.h"

namespace tokenbroker {

absl::StatusOr<Secret> SignClientAssertion(const App& app, const AppCredential& credential, const Secret& private_key,
                                           absl::string_view audience, absl::Time now) {
  const bool rs256 = app.assertion_algorithm == AssertionAlgorithm::kRs256;
  const std::string header =
      rs256 ? absl::StrCat(R"({"alg":"RS256","typ":"JWT","x5t":)", JsonQuote(credential.thumbprint_sha1), "}")
            : absl::StrCat(R"({"alg":"PS256","typ":"JWT","x5t#S256":)", JsonQuote(credential.thumbprint_sha256), "}");
  const int64_t iat = absl::ToUnixSeconds(now);
  const std::string claims =
      absl::StrCat("{\"aud\":", JsonQuote(audience), ",\"iss\":", JsonQuote(app.client_id),
                   ",\"sub\":", JsonQuote(app.client_id), ",\"jti\":", JsonQuote(RandomHex(16)), ",\"nbf\":", iat,
                   ",\"iat\":", iat, ",\"exp\":", iat + 600, "}");
  return SignJwt(header, claims, rs256 ? JwtAlgorithm::kRs256 : JwtAlgorithm::kPs256, private_key);
}

}  // namespace tokenbroker
