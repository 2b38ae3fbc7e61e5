// A token issuer for tests, shaped like a Kubernetes service-account issuer:
// an RSA (RS256) or P-256 (ES256) key, its JWKS, and signed JWTs with the
// claims a projected service-account token carries.
#ifndef TOKENBROKER_TESTS_SUPPORT_JWT_ISSUER_H_
#define TOKENBROKER_TESTS_SUPPORT_JWT_ISSUER_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {

class JwtIssuer {
 public:
  // `key_type`: "rsa" or "ec".
  JwtIssuer(const TempDir& dir, std::string kid, const std::string& key_type = "rsa");

  // {"keys": [this key]}.
  std::string Jwks() const;

  // A service-account token: iss, sub "system:serviceaccount:<ns>:<name>",
  // aud, iat, nbf, exp, and the kubernetes.io claim.
  std::string ServiceAccountToken(const std::string& issuer, const std::string& ns, const std::string& name,
                                  const std::vector<std::string>& audiences, absl::Time issued,
                                  absl::Duration lifetime) const;

  // Signs arbitrary claims (JSON) with this key.
  std::string Sign(const std::string& claims_json) const;

  const std::string& kid() const { return kid_; }

 private:
  std::string kid_;
  bool ec_ = false;
  std::string key_pem_;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_JWT_ISSUER_H_
