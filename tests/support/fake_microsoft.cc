#include "tests/support/fake_microsoft.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/crypto/jwt.h"
#include "service/crypto/random.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {
namespace {

google::protobuf::Struct DecodeJwtPart(absl::string_view part) {
  std::string json;
  absl::WebSafeBase64Unescape(part, &json);
  google::protobuf::Struct s;
  (void)google::protobuf::util::JsonStringToMessage(json, &s);
  return s;
}

std::string Str(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  return it == s.fields().end() ? "" : it->second.string_value();
}

double Num(const google::protobuf::Struct& s, const std::string& k) {
  auto it = s.fields().find(k);
  return it == s.fields().end() ? 0 : it->second.number_value();
}

}  // namespace

void FakeMicrosoft::RegisterApp(const std::string& tenant, const std::string& client_id, const std::string& secret,
                                const std::string& certificate_pem, const std::string& x5t_s256,
                                const std::string& x5t) {
  absl::MutexLock lock(&mu_);
  apps_[tenant + "/" + client_id] = App{secret, certificate_pem, x5t_s256, x5t};
}

void FakeMicrosoft::SetAppRoles(const std::string& tenant, const std::string& client_id,
                                std::vector<std::string> roles) {
  absl::MutexLock lock(&mu_);
  apps_[tenant + "/" + client_id].roles = std::move(roles);
}

void FakeMicrosoft::SetAudience(const std::string& tenant, const std::string& client_id, const std::string& audience) {
  absl::MutexLock lock(&mu_);
  apps_[tenant + "/" + client_id].audience = audience;
}

std::string FakeMicrosoft::TenantId(const std::string& tenant) {
  const std::string hex = absl::BytesToHexString(Sha256(tenant));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-", hex.substr(16, 4), "-",
                      hex.substr(20, 12));
}

std::string FakeMicrosoft::AccessTokenJwt(const std::string& tenant, const App& app, const std::string& client_id,
                                          const std::string& user, const std::string& scope, bool app_only,
                                          const std::string& marker) const {
  // The resource is the scheme and host of the first scope that names one.
  std::string audience = app.audience;
  std::vector<std::string> scp;
  for (absl::string_view one : absl::StrSplit(scope, ' ', absl::SkipEmpty())) {
    const size_t host_end = one.find('/', one.find("://") == absl::string_view::npos ? 0 : one.find("://") + 3);
    if (!absl::StartsWith(one, "https://")) continue;
    if (audience.empty()) audience = std::string(one.substr(0, host_end));
    if (host_end != absl::string_view::npos && one.substr(host_end + 1) != ".default") {
      scp.emplace_back(one.substr(host_end + 1));
    }
  }
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  google::protobuf::Struct claims;
  auto& f = *claims.mutable_fields();
  f["aud"].set_string_value(audience);
  f["iss"].set_string_value(absl::StrCat("https://sts.windows.net/", TenantId(tenant), "/"));
  f["tid"].set_string_value(TenantId(tenant));
  f["appid"].set_string_value(client_id);
  f["iat"].set_number_value(static_cast<double>(now));
  f["nbf"].set_number_value(static_cast<double>(now));
  f["exp"].set_number_value(static_cast<double>(now + expires_in_));
  if (app_only) {
    auto* roles = f["roles"].mutable_list_value();
    for (const std::string& r : app.roles) roles->add_values()->set_string_value(r);
  } else {
    f["scp"].set_string_value(absl::StrJoin(scp, " "));
    f["upn"].set_string_value(user);
  }
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(claims, &json);
  std::string header, payload;
  absl::WebSafeBase64Escape(R"({"typ":"JWT","alg":"RS256","kid":"fake"})", &header);
  absl::WebSafeBase64Escape(json, &payload);
  return absl::StrCat(header, ".", payload, ".", marker);
}

void FakeMicrosoft::SetHost(const std::string& host) {
  absl::MutexLock lock(&mu_);
  host_ = host;
}

void FakeMicrosoft::AddRefreshToken(const std::string& refresh_token, const std::string& user) {
  absl::MutexLock lock(&mu_);
  refresh_tokens_[refresh_token] = user;
  latest_refresh_[user] = refresh_token;
}

void FakeMicrosoft::SetReuseRevokes(bool on) {
  absl::MutexLock lock(&mu_);
  reuse_revokes_ = on;
}

int FakeMicrosoft::reused_refresh_tokens() const {
  absl::MutexLock lock(&mu_);
  return reused_;
}

std::vector<absl::Time> FakeMicrosoft::RefreshTimes(const std::string& user) const {
  absl::MutexLock lock(&mu_);
  auto it = refresh_times_.find(user);
  return it == refresh_times_.end() ? std::vector<absl::Time>() : it->second;
}

void FakeMicrosoft::RevokeUser(const std::string& user) {
  absl::MutexLock lock(&mu_);
  revoked_.insert(user);
}

void FakeMicrosoft::RevokeAccessTokens(const std::string& user) {
  absl::MutexLock lock(&mu_);
  for (auto it = access_tokens_.begin(); it != access_tokens_.end();) {
    it = it->second == user ? access_tokens_.erase(it) : std::next(it);
  }
}

void FakeMicrosoft::QueueFailure(int status, const std::string& error, int64_t code, int retry_after_seconds) {
  absl::MutexLock lock(&mu_);
  failures_.push_back({status, error, code, retry_after_seconds});
}

void FakeMicrosoft::ThrottleTenant(const std::string& tenant, int retry_after_seconds) {
  absl::MutexLock lock(&mu_);
  if (retry_after_seconds > 0) {
    throttled_tenants_[tenant] = retry_after_seconds;
  } else {
    throttled_tenants_.erase(tenant);
  }
}

std::vector<absl::Time> FakeMicrosoft::TokenRequestTimes(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = token_request_times_.find(tenant);
  return it == token_request_times_.end() ? std::vector<absl::Time>{} : it->second;
}

void FakeMicrosoft::SetDown(bool down) {
  absl::MutexLock lock(&mu_);
  down_ = down;
}

void FakeMicrosoft::Hold(bool held) {
  absl::MutexLock lock(&mu_);
  held_ = held;
}

bool FakeMicrosoft::WaitForHeldRequests(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return holding_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void FakeMicrosoft::SetExpiresIn(int seconds) {
  absl::MutexLock lock(&mu_);
  expires_in_ = seconds;
}

int FakeMicrosoft::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

int FakeMicrosoft::basic_auth_requests() const {
  absl::MutexLock lock(&mu_);
  return basic_auth_requests_;
}

std::string FakeMicrosoft::LatestRefreshToken(const std::string& user) const {
  absl::MutexLock lock(&mu_);
  auto it = latest_refresh_.find(user);
  return it == latest_refresh_.end() ? "" : it->second;
}

std::string FakeMicrosoft::UserOfAccessToken(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = access_tokens_.find(token);
  return it == access_tokens_.end() ? "" : it->second;
}

void FakeMicrosoft::SetDeviceCodeTimes(int interval_seconds, int expires_in_seconds) {
  absl::MutexLock lock(&mu_);
  device_interval_ = interval_seconds;
  device_expires_in_ = expires_in_seconds;
}

std::string FakeMicrosoft::LatestUserCode() const {
  absl::MutexLock lock(&mu_);
  return latest_user_code_;
}

void FakeMicrosoft::ApproveDeviceCode(const std::string& user_code, const std::string& user) {
  absl::MutexLock lock(&mu_);
  for (auto& [code, device] : device_codes_) {
    if (device.user_code == user_code) device.user = user;
  }
}

void FakeMicrosoft::DeclineDeviceCode(const std::string& user_code) {
  absl::MutexLock lock(&mu_);
  for (auto& [code, device] : device_codes_) {
    if (device.user_code == user_code) device.declined = true;
  }
}

std::string FakeMicrosoft::IssueAuthorizationCode(const std::string& authorization_url, const std::string& user) {
  absl::MutexLock lock(&mu_);
  const std::string prefix = "https://" + host_ + "/";
  const size_t query = authorization_url.find('?');
  if (authorization_url.rfind(prefix, 0) != 0 || query == std::string::npos ||
      !absl::EndsWith(authorization_url.substr(0, query), "/oauth2/v2.0/authorize")) {
    return "";
  }
  std::map<std::string, std::string> q = ParseForm(authorization_url.substr(query + 1));
  if (q["response_type"] != "code" || q["code_challenge_method"] != "S256" || q["code_challenge"].size() != 43 ||
      q["state"].empty() || q["redirect_uri"].empty() || q["client_id"].empty()) {
    return "";
  }
  const std::string code = absl::StrCat("0.AX-code-", user, "-", ++issued_);
  codes_[code] = AuthorizationCode{q["client_id"], q["redirect_uri"], q["scope"], q["code_challenge"], user};
  return code;
}

HttpResponse FakeMicrosoft::DeviceAuthorization(const std::map<std::string, std::string>& form) {
  const std::string device_code = absl::StrCat("DAQABAAEAAAD-device-", ++issued_);
  const std::string user_code = absl::StrCat("FAKE", 1000 + issued_);
  DeviceCode d;
  d.client_id = form.at("client_id");
  d.user_code = user_code;
  d.scope = form.count("scope") ? form.at("scope") : "";
  d.expire_time = clock_.Now() + absl::Seconds(device_expires_in_);
  d.interval = device_interval_;
  device_codes_[device_code] = d;
  latest_user_code_ = user_code;
  HttpResponse r;
  r.status = 200;
  r.headers["content-type"] = "application/json; charset=utf-8";
  r.body = absl::StrCat(R"({"user_code":")", user_code, R"(","device_code":")", device_code,
                        R"(","verification_uri":"https://microsoft.com/devicelogin","expires_in":)",
                        device_expires_in_, R"(,"interval":)", device_interval_,
                        R"(,"message":"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code )",
                        user_code, R"( to authenticate."})");
  return r;
}

HttpResponse FakeMicrosoft::Error(int status, const std::string& error, int64_t code,
                                  const std::string& description) const {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = "application/json; charset=utf-8";
  r.body = absl::StrCat(R"({"error":")", error, R"(","error_description":"AADSTS)", code, ": ", description,
                        R"(\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-11-27 10:00:00Z",)",
                        R"("error_codes":[)", code, R"(],"timestamp":"2026-11-27 10:00:00Z",)",
                        R"("trace_id":"0000","correlation_id":"1111","error_uri":"https://login.microsoftonline.com/error?code=)",
                        code, R"("})");
  return r;
}

std::string FakeMicrosoft::CheckAssertion(const App& app, const std::string& token_url, const std::string& client_id,
                                          const std::string& assertion) const {
  std::vector<absl::string_view> parts = absl::StrSplit(assertion, '.');
  if (parts.size() != 3) return "not a JWT";
  google::protobuf::Struct header = DecodeJwtPart(parts[0]);
  google::protobuf::Struct claims = DecodeJwtPart(parts[1]);
  const std::string alg = Str(header, "alg");
  if (alg == "PS256") {
    if (Str(header, "x5t#S256") != app.x5t_s256) return "x5t#S256 does not match the registered certificate";
  } else if (alg == "RS256") {
    if (Str(header, "x5t") != app.x5t) return "x5t does not match the registered certificate";
  } else {
    return "unsupported alg";
  }
  if (!VerifyJwt(assertion, alg == "PS256" ? JwtAlgorithm::kPs256 : JwtAlgorithm::kRs256, app.certificate_pem).ok()) {
    return "the signature does not verify";
  }
  const double now = static_cast<double>(absl::ToUnixSeconds(clock_.Now()));
  if (Str(claims, "aud") != token_url) return "aud is not the token endpoint";
  if (Str(claims, "iss") != client_id || Str(claims, "sub") != client_id) return "iss/sub are not the client id";
  if (Str(claims, "jti").empty()) return "no jti";
  if (Num(claims, "nbf") > now + 300 || Num(claims, "exp") < now || Num(claims, "exp") - Num(claims, "iat") > 3600) {
    return "the assertion is not valid now";
  }
  return "";
}

absl::StatusOr<HttpResponse> FakeMicrosoft::Send(const HttpRequest& request) {
  absl::MutexLock lock(&mu_);
  ++holding_;
  mu_.Await(absl::Condition(+[](bool* held) { return !*held; }, &held_));
  --holding_;
  // Introspection (the IMAP server's, not the broker's) is not counted.
  if (absl::EndsWith(request.url, "/introspect")) {
    auto it = access_tokens_.find(ParseForm(request.body)["token"]);
    HttpResponse r;
    r.status = 200;
    r.headers["content-type"] = "application/json";
    r.body = it == access_tokens_.end() ? R"({"active":false})"
                                        : absl::StrCat(R"({"active":true,"username":")", it->second, R"("})");
    return r;
  }
  ++requests_;
  if (down_) return absl::UnavailableError(absl::StrCat("HTTP request to ", host_, " failed: Couldn't connect"));
  if (!failures_.empty()) {
    Failure f = failures_.front();
    failures_.pop_front();
    HttpResponse r = Error(f.status, f.error, f.code, "scripted failure");
    if (f.retry_after > 0) r.headers["retry-after"] = absl::StrCat(f.retry_after);
    return r;
  }
  const std::string prefix = "https://" + host_ + "/";
  if (request.method != "POST" || request.url.rfind(prefix, 0) != 0) return Error(404, "not_found", 0, "no such URL");
  const std::string path = request.url.substr(prefix.size());
  const std::string tenant = path.substr(0, path.find('/'));
  std::map<std::string, std::string> form = ParseForm(request.body);
  std::string basic_secret;
  bool basic = false;
  for (const auto& [name, value] : request.headers) {
    if (absl::EqualsIgnoreCase(name, "authorization") && absl::StartsWith(value, "Basic ")) {
      std::string decoded;
      absl::Base64Unescape(value.substr(6), &decoded);
      const size_t colon = decoded.find(':');
      if (colon == std::string::npos) return Error(401, "invalid_client", 7000215, "Malformed Basic credentials");
      form["client_id"] = ParseForm("x=" + decoded.substr(0, colon))["x"];
      basic_secret = ParseForm("x=" + decoded.substr(colon + 1))["x"];
      basic = true;
      ++basic_auth_requests_;
      if (form.count("client_secret")) {
        return Error(401, "invalid_client", 7000215, "More than one client authentication method was used");
      }
    }
  }
  if (path == tenant + "/oauth2/v2.0/devicecode") {
    if (apps_.count(tenant + "/" + form["client_id"]) == 0) {
      return Error(400, "unauthorized_client", 700016, "Application not found in the directory");
    }
    return DeviceAuthorization(form);
  }
  if (path != tenant + "/oauth2/v2.0/token") return Error(404, "not_found", 0, "no such URL");
  token_request_times_[tenant].push_back(clock_.Now());
  if (auto throttled = throttled_tenants_.find(tenant); throttled != throttled_tenants_.end()) {
    HttpResponse r = Error(429, "temporarily_unavailable", 90055,
                           "TenantThrottlingError - There are too many incoming requests. This exception is thrown "
                           "for blocked tenants.");
    r.headers["retry-after"] = absl::StrCat(throttled->second);
    return r;
  }
  auto app = apps_.find(tenant + "/" + form["client_id"]);
  if (app == apps_.end()) return Error(400, "unauthorized_client", 700016, "Application not found in the directory");
  // Client authentication.
  if (basic) {
    if (basic_secret != app->second.secret) return Error(401, "invalid_client", 7000215, "Invalid client secret");
  } else if (form.count("client_secret")) {
    if (form["client_secret"] != app->second.secret) return Error(401, "invalid_client", 7000215, "Invalid client secret");
  } else if (form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
    const std::string why = CheckAssertion(app->second, request.url, form["client_id"], form["client_assertion"]);
    if (!why.empty()) return Error(401, "invalid_client", 700027, "Client assertion failed: " + why);
  } else {
    return Error(401, "invalid_client", 7000218, "The request body must contain client_secret or client_assertion");
  }
  std::string user;
  std::string new_refresh;
  const std::string grant_type = form["grant_type"];
  if (grant_type == "client_credentials") {
    if (form["scope"].find("/.default") == std::string::npos) {
      return Error(400, "invalid_scope", 1002012, "The provided value for scope is not valid");
    }
    user = "app:" + form["client_id"];
  } else if (grant_type == "refresh_token") {
    auto rt = refresh_tokens_.find(form["refresh_token"]);
    if (rt == refresh_tokens_.end()) return Error(400, "invalid_grant", 9002313, "Invalid request");
    user = rt->second;
    if (reuse_revokes_ && consumed_.count(rt->first)) {
      ++reused_;
      revoked_.insert(user);
    }
    if (revoked_.count(user)) return Error(400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked");
    refresh_times_[user].push_back(clock_.Now());
    if (reuse_revokes_) consumed_.insert(rt->first);
    // Refresh tokens replace themselves on every use; the old one stays valid
    // (unless reuse detection is on).
    new_refresh = absl::StrCat("0.rt-", user, "-", ++issued_);
    refresh_tokens_[new_refresh] = user;
    latest_refresh_[user] = new_refresh;
  } else if (grant_type == "urn:ietf:params:oauth:grant-type:device_code") {
    auto device = device_codes_.find(form["device_code"]);
    if (device == device_codes_.end() || device->second.client_id != form["client_id"]) {
      return Error(400, "bad_verification_code", 70000, "The device code is not valid");
    }
    DeviceCode& d = device->second;
    const absl::Time now = clock_.Now();
    if (now >= d.expire_time) return Error(400, "expired_token", 70019, "Verification code expired");
    if (d.declined) return Error(400, "authorization_declined", 70000, "The user declined the authorization");
    if (d.last_poll != absl::InfinitePast() && now - d.last_poll < absl::Seconds(d.interval)) {
      d.last_poll = now;
      d.interval += 5;
      return Error(400, "slow_down", 70000, "Polling too fast");
    }
    d.last_poll = now;
    if (d.user.empty()) return Error(400, "authorization_pending", 70016, "The user has not yet authenticated");
    user = d.user;
    form["scope"] = d.scope;
    device_codes_.erase(device);
  } else if (grant_type == "authorization_code") {
    auto code = codes_.find(form["code"]);
    if (code == codes_.end()) return Error(400, "invalid_grant", 70000, "The provided authorization code is invalid");
    AuthorizationCode& c = code->second;
    if (c.used) return Error(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed");
    c.used = true;
    if (c.client_id != form["client_id"]) return Error(400, "invalid_grant", 70000, "The code was issued to another app");
    if (c.redirect_uri != form["redirect_uri"]) {
      return Error(400, "invalid_grant", 500117, "The reply uri specified in the request does not match");
    }
    std::string verifier_digest;
    const std::string verifier = form["code_verifier"];
    absl::WebSafeBase64Escape(Sha256(verifier), &verifier_digest);
    if (verifier.size() < 43 || verifier_digest != c.code_challenge) {
      return Error(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge");
    }
    user = c.user;
    form["scope"] = c.scope;
  } else {
    return Error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type");
  }
  if (grant_type != "refresh_token" && grant_type != "client_credentials" &&
      form["scope"].find("offline_access") != std::string::npos) {
    new_refresh = absl::StrCat("0.rt-", user, "-", ++issued_);
    refresh_tokens_[new_refresh] = user;
    latest_refresh_[user] = new_refresh;
  }
  // The signature part names the token for tests ('.' is not in it).
  const std::string access =
      AccessTokenJwt(tenant, app->second, form["client_id"], user, form["scope"], grant_type == "client_credentials",
                     absl::StrCat("fake-access-", absl::StrReplaceAll(user, {{".", "_"}}), "-", ++issued_));
  access_tokens_[access] = user;
  HttpResponse r;
  r.status = 200;
  r.headers["content-type"] = "application/json; charset=utf-8";
  r.body = absl::StrCat(R"({"token_type":"Bearer","scope":")", form["scope"], R"(","expires_in":)", expires_in_,
                        R"(,"ext_expires_in":)", expires_in_, R"(,"access_token":")", access, "\"",
                        new_refresh.empty() ? "" : absl::StrCat(R"(,"refresh_token":")", new_refresh, "\""), "}");
  return r;
}

}  // namespace tokenbroker::testing
