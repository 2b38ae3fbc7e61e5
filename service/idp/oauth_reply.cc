#include "service/idp/oauth_reply.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace tokenbroker {
namespace {

bool In(int64_t code, std::initializer_list<int64_t> codes) {
  for (int64_t c : codes) {
    if (c == code) return true;
  }
  return false;
}

ProviderFailure Failure(FailureKind kind, int status, const std::string& error, int64_t code, std::string message) {
  ProviderFailure f;
  f.kind = kind;
  f.http_status = status;
  f.oauth_error = error;
  f.provider_code = code;
  f.message = code != 0 ? absl::StrCat(message, " (", error, ", AADSTS", code, ")")
                        : absl::StrCat(message, " (", error, ")");
  return f;
}

}  // namespace

ProviderFailure TransportFailure(const absl::Status& status) {
  ProviderFailure f;
  f.kind = FailureKind::kTransient;
  f.oauth_error = "transport";
  f.message = absl::StrCat("the identity provider could not be reached: ", status.message());
  return f;
}

TokenReply CredentialFailure(absl::string_view message) {
  TokenReply reply;
  reply.failure.kind = FailureKind::kInvalidClient;
  reply.failure.oauth_error = "invalid_credential";
  reply.failure.message = std::string(message);
  return reply;
}

absl::StatusOr<HttpResponse> PostForm(HttpClient& http, const std::string& url,
                                      std::vector<std::pair<std::string, std::string>> form,
                                      std::vector<std::pair<std::string, std::string>> headers) {
  HttpRequest request;
  request.url = url;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
  for (auto& header : headers) request.headers.push_back(std::move(header));
  request.body = FormEncode(form);
  for (auto& [name, value] : form) WipeString(value);
  absl::StatusOr<HttpResponse> response = http.Send(request);
  WipeString(request.body);
  for (auto& [name, value] : request.headers) WipeString(value);
  return response;
}

TokenReply PostTokenForm(HttpClient& http, const std::string& url,
                         std::vector<std::pair<std::string, std::string>> form, absl::Time now,
                         std::vector<std::pair<std::string, std::string>> headers) {
  absl::StatusOr<HttpResponse> response = PostForm(http, url, std::move(form), std::move(headers));
  if (!response.ok()) {
    TokenReply reply;
    reply.failure = TransportFailure(response.status());
    return reply;
  }
  TokenReply reply = ParseTokenReply(*response, now);
  WipeString(response->body);
  return reply;
}

ProviderFailure ClassifyOAuthError(int status, const std::string& error, int64_t code) {
  // Codes that override the error: throttling and known transient failures.
  if (In(code, {50196, 90055})) {
    return Failure(FailureKind::kThrottled, status, error, code, "the identity provider is throttling requests");
  }
  if (In(code, {50033, 90006, 90024, 90090})) {
    return Failure(FailureKind::kTransient, status, error, code, "a transient identity-provider failure");
  }
  if (error == "invalid_grant" || error == "interaction_required" || error == "consent_required" ||
      error == "login_required") {
    std::string what = "the grant is no longer valid; consent again";
    if (In(code, {700082, 70008})) what = "the refresh token expired (unused for too long); consent again";
    if (In(code, {50173, 70000})) what = "the grant was revoked or its refresh token is invalid; consent again";
    if (code == 65001) what = "the user or an admin has not consented to the app; consent again";
    if (In(code, {50076, 50079, 53003, 70043})) {
      what = "multi-factor authentication or Conditional Access requires an interactive sign-in; consent again";
    }
    return Failure(FailureKind::kNeedsReconsent, status, error, code, what);
  }
  if (error == "invalid_client") {
    if (In(code, {700016, 90002})) {
      return Failure(FailureKind::kAppConfiguration, status, error, code,
                     code == 90002 ? "the tenant was not found; check the app's tenant"
                                   : "the application was not found in the tenant; check the client id and tenant");
    }
    std::string what = "the identity provider rejected this credential";
    if (code == 7000215) what = "the client secret is wrong (use the secret's value, not its id)";
    if (code == 7000222) what = "the client secret has expired; add a new one with `tokenbrokerctl app add-credential`";
    if (In(code, {700027, 50012, 500133})) {
      what = "the certificate assertion was rejected (check the certificate uploaded to the app registration and "
             "this machine's clock)";
    }
    return Failure(FailureKind::kInvalidClient, status, error, code, what);
  }
  if (error == "unauthorized_client" || error == "invalid_scope" || error == "unsupported_grant_type") {
    return Failure(FailureKind::kAppConfiguration, status, error, code,
                   "the app is not allowed to get this token (check its API permissions and admin consent)");
  }
  if (In(code, {700016, 90002})) {
    return Failure(FailureKind::kAppConfiguration, status, error, code, "the app or tenant was not found");
  }
  if (status == 429) return Failure(FailureKind::kThrottled, status, error, code, "the identity provider is throttling");
  if (status == 408) return Failure(FailureKind::kTransient, status, error, code, "the identity provider timed out");
  if (status >= 500 || error == "temporarily_unavailable" || error == "server_error") {
    return Failure(FailureKind::kTransient, status, error, code, "the identity provider failed");
  }
  return Failure(FailureKind::kAppConfiguration, status, error, code, "the identity provider refused the request");
}

TokenReply ParseTokenReply(const HttpResponse& response, absl::Time now) {
  TokenReply reply;
  google::protobuf::Struct json;
  const bool parsed = google::protobuf::util::JsonStringToMessage(response.body, &json).ok();
  if (response.status == 200 && !parsed) {
    reply.failure = Failure(FailureKind::kTransient, 200, "malformed_response", 0,
                            "the identity provider's answer is not JSON (a proxy or captive portal in the way?)");
    return reply;
  }
  if (response.status == 200) {
    const google::protobuf::Value* token = JsonField(json, "access_token");
    double expires_in = 0;
    if (token == nullptr || !token->has_string_value() || token->string_value().empty() ||
        !JsonSeconds(json, "expires_in", &expires_in) || expires_in <= 0) {
      WipeJsonStrings(json);
      reply.failure = Failure(FailureKind::kTransient, 200, "malformed_response", 0,
                              "the identity provider's answer has no access_token or expires_in");
      return reply;
    }
    IssuedToken issued;
    issued.access_token = Secret::CopyFrom(token->string_value());
    issued.expire_time = now + absl::Seconds(JsonInteger(expires_in));
    if (const auto* type = JsonField(json, "token_type"); type != nullptr && type->has_string_value()) {
      issued.token_type = type->string_value();
    }
    if (const auto* rt = JsonField(json, "refresh_token"); rt != nullptr && rt->has_string_value()) {
      issued.refresh_token = Secret::CopyFrom(rt->string_value());
    }
    if (const auto* scope = JsonField(json, "scope"); scope != nullptr && scope->has_string_value()) {
      issued.scopes = absl::StrSplit(scope->string_value(), ' ', absl::SkipEmpty());
    }
    WipeJsonStrings(json);
    reply.token = std::move(issued);
    return reply;
  }
  std::string error = "http_" + std::to_string(response.status);
  int64_t code = 0;
  if (parsed) {
    if (const auto* e = JsonField(json, "error"); e != nullptr && e->has_string_value()) error = e->string_value();
    if (const auto* codes = JsonField(json, "error_codes");
        codes != nullptr && codes->has_list_value() && codes->list_value().values_size() > 0) {
      code = JsonInteger(codes->list_value().values(0).number_value());
    }
  }
  reply.failure = ClassifyOAuthError(response.status, error, code);
  if (auto it = response.headers.find("retry-after"); it != response.headers.end()) {
    int64_t seconds = 0;
    if (absl::SimpleAtoi(it->second, &seconds) && seconds > 0) reply.failure.retry_after = absl::Seconds(seconds);
  }
  if (response.status == 429) reply.failure.kind = FailureKind::kThrottled;
  return reply;
}

}  // namespace tokenbroker
