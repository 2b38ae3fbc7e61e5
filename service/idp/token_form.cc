#include "service/idp/token_form.h"

#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/idp/client_assertion.h"
#include "service/idp/oauth_reply.h"

namespace tokenbroker {
namespace {

constexpr char kJwtBearerAssertion[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr char kDeviceCodeGrant[] = "urn:ietf:params:oauth:grant-type:device_code";


}  // namespace

void AppendGrantParameters(const TokenRequest& r, FormFields& form) {
  if (r.authorization_code != nullptr) {
    form.emplace_back("grant_type", "authorization_code");
    form.emplace_back("code", std::string(r.authorization_code->code.Reveal()));
    form.emplace_back("redirect_uri", r.authorization_code->redirect_uri);
    form.emplace_back("code_verifier", std::string(r.authorization_code->code_verifier.Reveal()));
  } else if (r.device_code != nullptr) {
    form.emplace_back("grant_type", kDeviceCodeGrant);
    form.emplace_back("device_code", std::string(r.device_code->Reveal()));
  } else if (r.grant->kind == GrantKind::kDelegated) {
    form.emplace_back("grant_type", "refresh_token");
    form.emplace_back("refresh_token", r.refresh_token != nullptr ? std::string(r.refresh_token->Reveal()) : "");
  } else {
    form.emplace_back("grant_type", "client_credentials");
  }
  if (!r.grant->scopes.empty()) form.emplace_back("scope", absl::StrJoin(r.grant->scopes, " "));
}

std::optional<TokenReply> AuthenticateClient(const TokenRequest& r, absl::string_view audience, absl::Time now,
                                             FormFields& form, std::vector<std::pair<std::string, std::string>>& headers) {
  const App& app = *r.app;
  if (r.credential->kind == CredentialKind::kCertificate) {
    absl::StatusOr<Secret> assertion = SignClientAssertion(app, *r.credential, *r.credential_secret, audience, now);
    if (!assertion.ok()) return CredentialFailure(assertion.status().message());
    form.emplace_back("client_id", app.client_id);
    form.emplace_back("client_assertion_type", kJwtBearerAssertion);
    form.emplace_back("client_assertion", std::string(assertion->Reveal()));
    return std::nullopt;
  }
  if (r.credential->kind != CredentialKind::kClientSecret) {
    return CredentialFailure("this grant needs a client secret or certificate credential");
  }
  if (app.client_secret_auth == ClientSecretAuth::kBasic) {
    // RFC 6749 section 2.3.1: both parts form-encoded before base64.
    std::string pair = absl::StrCat(UrlEncode(app.client_id), ":", UrlEncode(r.credential_secret->Reveal()));
    std::string encoded;
    absl::Base64Escape(pair, &encoded);
    WipeString(pair);
    headers.emplace_back("Authorization", "Basic " + encoded);
    WipeString(encoded);
    return std::nullopt;
  }
  form.emplace_back("client_id", app.client_id);
  form.emplace_back("client_secret", std::string(r.credential_secret->Reveal()));
  return std::nullopt;
}

std::string BuildAuthorizationUrl(absl::string_view endpoint, const App& app, const Grant& grant,
                                  const AuthorizationUrlRequest& request, const FormFields& extra) {
  FormFields query = {{"response_type", "code"},
                      {"client_id", app.client_id},
                      {"redirect_uri", request.redirect_uri},
                      {"response_mode", "query"},
                      {"scope", absl::StrJoin(grant.scopes, " ")},
                      {"state", request.state},
                      {"code_challenge", request.code_challenge},
                      {"code_challenge_method", "S256"}};
  if (!request.login_hint.empty()) query.emplace_back("login_hint", request.login_hint);
  if (!request.prompt.empty()) query.emplace_back("prompt", request.prompt);
  for (const auto& field : extra) query.push_back(field);
  return absl::StrCat(endpoint, endpoint.find('?') == absl::string_view::npos ? "?" : "&", FormEncode(query));
}

DeviceAuthorizationReply PostDeviceAuthorization(HttpClient& http, const std::string& url, FormFields form,
                                                 std::vector<std::pair<std::string, std::string>> headers,
                                                 absl::Time now) {
  absl::StatusOr<HttpResponse> response = PostForm(http, url, std::move(form), std::move(headers));
  DeviceAuthorizationReply reply;
  if (!response.ok()) {
    reply.failure = TransportFailure(response.status());
    return reply;
  }
  if (response->status != 200) {
    // Errors have the token endpoint's shape (RFC 8628 section 3.2).
    reply.failure = ParseTokenReply(*response, now).failure;
    return reply;
  }
  google::protobuf::Struct json;
  const bool parsed = google::protobuf::util::JsonStringToMessage(response->body, &json).ok();
  WipeString(response->body);
  DeviceAuthorization started;
  started.device_code = Secret(JsonString(json, "device_code"));
  started.user_code = JsonString(json, "user_code");
  started.verification_uri = JsonString(json, "verification_uri");
  if (started.verification_uri.empty()) started.verification_uri = JsonString(json, "verification_url");
  started.message = JsonString(json, "message");
  double expires_in = 0;
  double interval = 0;
  if (!JsonSeconds(json, "expires_in", &expires_in)) expires_in = 0;
  if (!JsonSeconds(json, "interval", &interval)) interval = 0;
  started.expire_time = now + absl::Seconds(JsonInteger(expires_in));
  // RFC 8628 section 3.2: 5 seconds when the provider does not say.
  started.interval = absl::Seconds(interval > 0 ? JsonInteger(interval) : 5);
  if (auto it = json.mutable_fields()->find("device_code"); it != json.mutable_fields()->end()) {
    WipeString(*it->second.mutable_string_value());
  }
  if (!parsed || started.device_code.empty() || started.user_code.empty() || started.verification_uri.empty() ||
      expires_in <= 0) {
    reply.failure.kind = FailureKind::kTransient;
    reply.failure.oauth_error = "malformed_response";
    reply.failure.http_status = 200;
    reply.failure.message =
        "the identity provider's device authorization answer lacks device_code, user_code, verification_uri or "
        "expires_in";
    return reply;
  }
  reply.authorization = std::move(started);
  return reply;
}

}  // namespace tokenbroker
