// A Microsoft-shaped token endpoint as an HttpClient, for unit tests of the
// provider and the token engine. It follows the v2.0 wire format: form-encoded
// requests to /{tenant}/oauth2/v2.0/token; JSON answers with token_type,
// access_token, expires_in and (delegated) a new refresh_token on every use;
// errors as HTTP 400/401 with error, error_description, error_codes,
// timestamp, trace_id, correlation_id; 429 with Retry-After. Client assertions
// are verified: signature against the registered certificate, the header's
// alg and thumbprint, and the aud, iss, sub, nbf and exp claims.
#ifndef TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_
#define TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_

#include <deque>
#include <map>
#include <set>
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
  // The next answers, before normal processing: HTTP status, body, Retry-After.
  void QueueFailure(int status, const std::string& error, int64_t code, int retry_after_seconds = 0);
  // Fails at the transport level (as if the host were down) while set.
  void SetDown(bool down);
  // Seconds of validity of issued access tokens.
  void SetExpiresIn(int seconds);

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;

  int requests() const;
  // The newest refresh token issued for `user`.
  std::string LatestRefreshToken(const std::string& user) const;
  // Whether an access token was issued by this fake, and for whom.
  std::string UserOfAccessToken(const std::string& token) const;

 private:
  struct App {
    std::string secret, certificate_pem, x5t_s256, x5t;
  };
  struct Failure {
    int status;
    std::string error;
    int64_t code;
    int retry_after;
  };
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
  std::deque<Failure> failures_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int expires_in_ ABSL_GUARDED_BY(mu_) = 3599;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  int issued_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_FAKE_MICROSOFT_H_
