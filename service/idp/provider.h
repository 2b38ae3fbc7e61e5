// IdentityProvider: one identity provider's token endpoint. The token engine asks for
// a token for a grant with one of its app's credentials; the provider answers
// with a token or a classified failure (what the broker should do about it).
#ifndef TOKENBROKER_SERVICE_IDP_PROVIDER_H_
#define TOKENBROKER_SERVICE_IDP_PROVIDER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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

// An authorization code to redeem (RFC 6749 section 4.1.3 with PKCE, RFC 7636).
struct AuthorizationCode {
  Secret code;
  std::string redirect_uri;
  Secret code_verifier;
};

// One request: the grant, its app, which credential to use and its opened
// secret, and what to redeem: (delegated) the opened refresh token, or during
// consent an authorization code or a device code. With none of those: client
// credentials (app-only) or a JWT bearer assertion (service account).
struct TokenRequest {
  const App* app = nullptr;
  const Grant* grant = nullptr;
  const AppCredential* credential = nullptr;
  const Secret* credential_secret = nullptr;
  const Secret* refresh_token = nullptr;
  const AuthorizationCode* authorization_code = nullptr;
  const Secret* device_code = nullptr;
};

// What the user is sent to in the authorization-code flow.
struct AuthorizationUrlRequest {
  std::string redirect_uri;
  std::string state;
  std::string code_challenge;  // base64url(SHA-256(code_verifier)), method S256
  std::string login_hint;
  std::string prompt;
};

// A started device authorization (RFC 8628 section 3.2).
struct DeviceAuthorization {
  Secret device_code;
  std::string user_code;
  std::string verification_uri;
  std::string message;
  absl::Time expire_time;
  absl::Duration interval;
};

struct DeviceAuthorizationReply {
  std::optional<DeviceAuthorization> authorization;
  ProviderFailure failure;  // meaningful when !authorization
  bool ok() const { return authorization.has_value(); }
};

class IdentityProvider {
 public:
  virtual ~IdentityProvider() = default;
  // Never returns secrets in `failure`. Thread-safe.
  virtual TokenReply RequestToken(const TokenRequest& request) = 0;
  // The URL that starts the authorization-code flow for `grant`'s scopes.
  // FAILED_PRECONDITION when the provider or app has no authorization endpoint.
  virtual absl::StatusOr<std::string> AuthorizationUrl(const App& app, const Grant& grant,
                                                       const AuthorizationUrlRequest& request);
  // Starts the device-code flow for `request.grant`'s scopes (request.credential
  // authenticates a confidential client where the provider wants it).
  virtual DeviceAuthorizationReply StartDeviceAuthorization(const TokenRequest& request);
  // Whether an app-only (client-credentials) token is the app's own, good for
  // every mailbox the app may open (Microsoft, OIDC), rather than minted for
  // one mailbox (a Google service account impersonates it): then the grants
  // of one app and scopes share one token.
  virtual bool AppOnlyTokenIsPerApp() const { return false; }
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IDP_PROVIDER_H_
