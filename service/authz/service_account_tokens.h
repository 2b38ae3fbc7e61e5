// Verifies Kubernetes service-account tokens (projected JWTs): signature
// against the issuer's JWKS (RS256 or ES256), `iss`, `aud`, `exp`, `nbf`.
// The identity is the token's `sub` ("system:serviceaccount:<ns>:<name>").
//
// Keys come from a JwksSource (a file, or a URL over HttpClient), cached for
// the refresh interval; a token naming an unknown key id fetches again at
// once, at most every 10 seconds (so a flood of forged key ids cannot turn
// into a flood of fetches). Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUTHZ_SERVICE_ACCOUNT_TOKENS_H_
#define TOKENBROKER_SERVICE_AUTHZ_SERVICE_ACCOUNT_TOKENS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/http/http_client.h"

namespace tokenbroker {

// Where the JWKS document comes from.
class JwksSource {
 public:
  virtual ~JwksSource() = default;
  virtual absl::StatusOr<std::string> Fetch() = 0;
};

// Reads the JWKS from a file each time.
std::unique_ptr<JwksSource> JwksFile(std::string path);
// GETs the JWKS from `url`, with `authorization: Bearer <token>` when
// `bearer_token_file` is set (read at each fetch: the kubelet rotates it).
std::unique_ptr<JwksSource> JwksUrl(HttpClient& http, std::string url, std::string bearer_token_file);

// A JWKS's usable keys (kty RSA or EC P-256, with a kid); keys of other
// types are skipped. INVALID_ARGUMENT when the document is not a JWKS.
class JsonWebKeySet {
 public:
  static absl::StatusOr<JsonWebKeySet> Parse(absl::string_view json);
  // OK when `signature` is a valid `alg` signature of `signing_input` by key
  // `kid`; UNAUTHENTICATED otherwise; NOT_FOUND when there is no such key.
  absl::Status Verify(absl::string_view kid, absl::string_view alg, absl::string_view signing_input,
                      absl::string_view signature) const;
  bool Contains(absl::string_view kid) const { return keys_.count(std::string(kid)) > 0; }
  size_t size() const { return keys_.size(); }

 private:
  struct Key;
  std::map<std::string, std::shared_ptr<const Key>> keys_;
};

struct ServiceAccountTokenOptions {
  std::string issuer;
  std::vector<std::string> audiences;
  absl::Duration refresh_interval = absl::Minutes(5);
  absl::Duration leeway = absl::Seconds(30);
};

class ServiceAccountTokenVerifier {
 public:
  ServiceAccountTokenVerifier(ServiceAccountTokenOptions options, std::unique_ptr<JwksSource> source,
                              const Clock& clock);

  // The token's `sub`. UNAUTHENTICATED with the reason (never the token) when
  // it is not valid; UNAVAILABLE when the keys cannot be fetched.
  absl::StatusOr<std::string> Verify(absl::string_view jwt);

 private:
  // The key set, fetched again when stale or (rate-limited) when `kid` is
  // unknown.
  absl::StatusOr<std::shared_ptr<const JsonWebKeySet>> Keys(absl::string_view kid);

  const ServiceAccountTokenOptions options_;
  const std::unique_ptr<JwksSource> source_;
  const Clock& clock_;
  absl::Mutex mu_;
  std::shared_ptr<const JsonWebKeySet> keys_ ABSL_GUARDED_BY(mu_);
  absl::Time fetched_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // The last fetch made because a token named an unknown key id.
  absl::Time last_kid_fetch_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUTHZ_SERVICE_ACCOUNT_TOKENS_H_
