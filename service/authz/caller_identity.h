// Who is calling: one identity per call, from the `authorization` header
// (a static bearer token, or a Kubernetes service-account JWT), else the
// client certificate (mTLS), else the configured local identity on a
// plaintext loopback listener. A header that is present but not valid is
// refused: it never falls back to the certificate. Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUTHZ_CALLER_IDENTITY_H_
#define TOKENBROKER_SERVICE_AUTHZ_CALLER_IDENTITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/authz/service_account_tokens.h"
#include "service/common/clock.h"
#include "service/http/curl_http_client.h"
#include "tokenbroker/config/v1/config.pb.h"

namespace tokenbroker {

// What a call presented. Views into the call's own data.
struct CallerCredentials {
  absl::string_view authorization;         // the header's value; empty: none
  absl::string_view peer_certificate_pem;  // verified client certificate; empty: none
  bool plaintext = false;                  // the listener is plaintext (loopback only)
};

struct CallerIdentity {
  // The name policies match: a SPIFFE ID, "dns:<name>", "cn:<name>", a
  // service account's "system:serviceaccount:<ns>:<name>", a bearer token's
  // configured identity, or the local identity.
  std::string name;
  // "certificate", "bearer", "service-account" or "local".
  absl::string_view method;
};

// The identity a client certificate proves: its first SPIFFE URI SAN, else
// "dns:" + its first DNS SAN, else "cn:" + its subject CN. INVALID_ARGUMENT
// when the PEM holds no certificate or none of these.
absl::StatusOr<std::string> CertificateIdentity(absl::string_view pem);

class IdentityResolver {
 public:
  // Reads the bearer token files; INVALID_ARGUMENT naming the key when one
  // is missing, too short, or the service-account section is incomplete.
  static absl::StatusOr<std::unique_ptr<IdentityResolver>> Create(const config::v1::AuthConfig& auth,
                                                                  const Clock& clock);

  // UNAUTHENTICATED saying what is missing or wrong (never echoing the
  // credential); UNAVAILABLE when service-account keys cannot be fetched.
  absl::StatusOr<CallerIdentity> Resolve(const CallerCredentials& credentials);

 private:
  IdentityResolver() = default;
  absl::StatusOr<CallerIdentity> FromBearer(absl::string_view token);
  absl::StatusOr<std::string> FromCertificate(absl::string_view pem);

  struct StaticToken {
    std::string identity;
    std::string digest;  // SHA-256 of the token
  };
  std::string local_caller_;
  std::vector<StaticToken> static_tokens_;
  std::unique_ptr<CurlHttpClient> jwks_http_;
  std::unique_ptr<ServiceAccountTokenVerifier> service_accounts_;
  absl::Mutex mu_;
  // Parsed certificates: a connection presents the same one on every call.
  absl::flat_hash_map<std::string, std::string> certificates_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUTHZ_CALLER_IDENTITY_H_
