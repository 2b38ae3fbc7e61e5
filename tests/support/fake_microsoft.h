// A Microsoft-shaped token endpoint as an HttpClient, for unit tests of the
// provider and the token engine. It follows the v2.0 wire format: form-encoded
// requests to /{tenant}/oauth2/v2.0/token; JSON answers with token_type,
// access_token, expires_in and (delegated) a new refresh_token on every use;
// errors as HTTP 400/401 with error, error_description, error_codes,
// timestamp, trace_id, correlation_id; 429 with Retry-After. Client assertions
// are verified: signature against the registered certificate, the header's
// alg and thumbprint, and the aud, iss, sub, nbf and exp claims. Client
// secrets are accepted in the form or as HTTP Basic.
//
// Introspection (RFC 7662) for IMAP servers: POST /introspect with token=...
// answers {"active": true, "username": user} for a live access token it
// issued, {"active": false} otherwise.
//
// Consent: /devicecode starts a device authorization; polling the token
// endpoint answers authorization_pending until the test approves or declines
// the user code, slow_down (and a 5 s longer interval) when polled faster
// than the interval, expired_token after expires_in. Authorization codes are
// issued by the test (as if a user had signed in at /authorize) and redeemed
// once, with the redirect URI and the PKCE verifier they were issued for.
#ifndef TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_
#define TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_

#include <deque>
#include <map>
#include <set>
#include <vector>
#include <string>

#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/http/http_client.h"

namespace tokenbroker::testing {

class FakeMicrosoft final : public HttpClient {
 public:
  explicit FakeMicrosoft(const Clock& clock, std::string host = "login.microsoftonline.com")
      : clock_(clock), host_(std::move(host)) {}

  // The host (and port) requests must be addressed to.
  void SetHost(const std::string& host);
  // Registers an app: its client secret and/or certificate (PEM) with the
  // certificate's base64url SHA-256 / SHA-1 thumbprints.
  void RegisterApp(const std::string& tenant, const std::string& client_id, const std::string& secret,
                   const std::string& certificate_pem = "", const std::string& x5t_s256 = "",
                   const std::string& x5t = "");
  // A refresh token the fake will accept, for `user`.
  void AddRefreshToken(const std::string& refresh_token, const std::string& user);
  // Revokes every refresh token of `user` (AADSTS50173 from then on).
  void RevokeUser(const std::string& user);
  // Revokes the access tokens issued so far to `user` (introspection answers
  // active: false); refresh tokens keep working.
  void RevokeAccessTokens(const std::string& user);
  // The next answers, before normal processing: HTTP status, body, Retry-After.
  void QueueFailure(int status, const std::string& error, int64_t code, int retry_after_seconds = 0);
  // Token requests to `tenant` get HTTP 429 with Microsoft's tenant
  // throttling error (AADSTS90055) and this Retry-After while set; 0 lifts it.
  void ThrottleTenant(const std::string& tenant, int retry_after_seconds);
  // Fails at the transport level (as if the host were down) while set.
  void SetDown(bool down);
  // While held, requests wait (as if the provider were very slow) until
  // released.
  void Hold(bool held);
  // Waits until `n` requests are waiting in Hold; false after `timeout`.
  bool WaitForHeldRequests(int n, absl::Duration timeout);
  // Seconds of validity of issued access tokens.
  void SetExpiresIn(int seconds);
  // Access tokens are JWTs shaped as Microsoft's for Exchange Online: `aud`
  // the resource of the requested scope (https://outlook.office365.com for
  // .default, https://outlook.office.com for IMAP.AccessAsUser.All), `tid`
  // the tenant's id (TenantId), `appid`, `roles` for the client-credentials
  // grant (the app's application permissions; IMAP.AccessAsApp unless set),
  // `scp` for delegated tokens, `upn`. The app's roles, as an admin granted
  // them (none: the permission was never admin-consented).
  void SetAppRoles(const std::string& tenant, const std::string& client_id, std::vector<std::string> roles);
  // Tokens for the app carry this audience whatever the scope (an app that
  // asked for the wrong resource).
  void SetAudience(const std::string& tenant, const std::string& client_id, const std::string& audience);
  // The directory (tenant) id the fake gives `tenant` in `tid`: a GUID.
  static std::string TenantId(const std::string& tenant);
  // Refresh-token reuse detection, as providers that rotate refresh tokens
  // strictly do (Google, oidc-provider with rotation): while on, a refresh
  // token is consumed by its use, and presenting a consumed one revokes every
  // refresh token of its user (invalid_grant from then on).
  void SetReuseRevokes(bool on);
  // Consumed refresh tokens presented again (each revoked its user).
  int reused_refresh_tokens() const;
  // When each refresh_token grant of `user` came, in order.
  std::vector<absl::Time> RefreshTimes(const std::string& user) const;

  // Device authorizations: the interval and lifetime of new device codes.
  void SetDeviceCodeTimes(int interval_seconds, int expires_in_seconds);
  // The user code of the newest device authorization.
  std::string LatestUserCode() const;
  // A user signs in with `user_code` (approve) or refuses (decline).
  void ApproveDeviceCode(const std::string& user_code, const std::string& user);
  void DeclineDeviceCode(const std::string& user_code);
  // As if `user` signed in at the authorization URL: a code bound to the
  // URL's client_id, redirect_uri, scope and code_challenge (S256 only).
  // Empty when the URL is not a valid authorization request.
  std::string IssueAuthorizationCode(const std::string& authorization_url, const std::string& user);

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;

  int requests() const;
  // When each token request to `tenant` came (this fake's clock), in order.
  std::vector<absl::Time> TokenRequestTimes(const std::string& tenant) const;
  // Requests whose client authenticated with HTTP Basic.
  int basic_auth_requests() const;
  // The newest refresh token issued for `user`.
  std::string LatestRefreshToken(const std::string& user) const;
  // Whether an access token was issued by this fake, and for whom.
  std::string UserOfAccessToken(const std::string& token) const;

 private:
  struct App {
    std::string secret, certificate_pem, x5t_s256, x5t;
    std::vector<std::string> roles = {"IMAP.AccessAsApp"};
    std::string audience;  // empty: from the scope
  };
  // A JWT-shaped access token whose signature part is `marker`.
  std::string AccessTokenJwt(const std::string& tenant, const App& app, const std::string& client_id,
                             const std::string& user, const std::string& scope, bool app_only,
                             const std::string& marker) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct Failure {
    int status;
    std::string error;
    int64_t code;
    int retry_after;
  };
  struct DeviceCode {
    std::string client_id, user_code, scope, user;
    absl::Time expire_time, last_poll = absl::InfinitePast();
    int interval = 5;
    bool declined = false;
  };
  struct AuthorizationCode {
    std::string client_id, redirect_uri, scope, code_challenge, user;
    bool used = false;
  };
  HttpResponse DeviceAuthorization(const std::map<std::string, std::string>& form)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse Error(int status, const std::string& error, int64_t code, const std::string& description) const;
  std::string CheckAssertion(const App& app, const std::string& token_url, const std::string& client_id,
                             const std::string& assertion) const;

  const Clock& clock_;
  std::string host_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, App> apps_ ABSL_GUARDED_BY(mu_);  // key: tenant/client_id
  std::map<std::string, std::string> refresh_tokens_ ABSL_GUARDED_BY(mu_);  // token -> user
  std::map<std::string, std::string> latest_refresh_ ABSL_GUARDED_BY(mu_);  // user -> token
  std::map<std::string, std::string> access_tokens_ ABSL_GUARDED_BY(mu_);   // token -> user
  std::set<std::string> revoked_ ABSL_GUARDED_BY(mu_);
  bool reuse_revokes_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> consumed_ ABSL_GUARDED_BY(mu_);
  int reused_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::vector<absl::Time>> refresh_times_ ABSL_GUARDED_BY(mu_);
  std::deque<Failure> failures_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int holding_ ABSL_GUARDED_BY(mu_) = 0;
  int expires_in_ ABSL_GUARDED_BY(mu_) = 3599;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> throttled_tenants_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<absl::Time>> token_request_times_ ABSL_GUARDED_BY(mu_);
  int basic_auth_requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, DeviceCode> device_codes_ ABSL_GUARDED_BY(mu_);  // by device_code
  std::string latest_user_code_ ABSL_GUARDED_BY(mu_);
  int device_interval_ ABSL_GUARDED_BY(mu_) = 5;
  int device_expires_in_ ABSL_GUARDED_BY(mu_) = 900;
  std::map<std::string, AuthorizationCode> codes_ ABSL_GUARDED_BY(mu_);
  int issued_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_
