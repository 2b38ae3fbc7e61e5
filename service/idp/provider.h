// IdentityProvider: one identity provider's token endpoint. The token engine asks for
// a token for a grant with one of its app's credentials; the provider answers
// with a token or a classified failure (what the broker should do about it).
#ifndef TOKENBROKER_SERVICE_IDP_PROVIDER_H_
#define TOKENBROKER_SERVICE_IDP_PROVIDER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/common/secret.h"
#include "service/store/model.h"

namespace tokenbroker {

// What a failure means for the broker (protocol-notes.md, "Errors").
enum class FailureKind {
  // Network, timeout, 5xx, malformed answer: back off and retry; keep serving
  // the cached token.
  kTransient,
  // 429 or a throttling code: wait at least retry_after.
  kThrottled,
  // invalid_grant family: the grant needs (re-)consent.
  kNeedsReconsent,
  // invalid_client family: this credential is rejected; try the next one.
  kInvalidClient,
  // App or tenant not found, bad scope: the app's configuration is wrong.
  kAppConfiguration,
};

// "transient", "throttled", "invalid_grant", "invalid_client",
// "app_configuration": the metric outcome label.
absl::string_view FailureKindName(FailureKind kind);

struct ProviderFailure {
  FailureKind kind = FailureKind::kTransient;
  // The OAuth `error`, or "transport".
  std::string oauth_error;
  // Microsoft's AADSTS number, when given.
  int64_t provider_code = 0;
  // What happened and what to do; never a token or secret.
  std::string message;
  int http_status = 0;
  // From Retry-After (429, 503).
  absl::Duration retry_after = absl::ZeroDuration();
};

struct IssuedToken {
  Secret access_token;
  std::string token_type = "Bearer";
  absl::Time expire_time;
  // Delegated grants: the provider's new refresh token (may be empty when the
  // provider does not rotate).
  Secret refresh_token;
  std::vector<std::string> scopes;
};

struct TokenReply {
  std::optional<IssuedToken> token;
  ProviderFailure failure;  // meaningful when !token
  bool ok() const { return token.has_value(); }
};

// One request: the grant, its app, which credential to use and its opened
// secret, and (delegated) the opened refresh token.
struct TokenRequest {
  const App* app = nullptr;
  const Grant* grant = nullptr;
  const AppCredential* credential = nullptr;
  const Secret* credential_secret = nullptr;
  const Secret* refresh_token = nullptr;
};

class IdentityProvider {
 public:
  virtual ~IdentityProvider() = default;
  // Never returns secrets in `failure`. Thread-safe.
  virtual TokenReply RequestToken(const TokenRequest& request) = 0;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_PROVIDER_H_
