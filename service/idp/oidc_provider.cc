#include "service/idp/oidc_provider.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/idp/client_assertion.h"
#include "service/idp/oauth_reply.h"

namespace tokenbroker {

absl::StatusOr<std::string> OidcProvider::TokenEndpoint(const App& app) {
  if (!app.token_endpoint.empty()) return app.token_endpoint;
  const std::string issuer(absl::StripSuffix(app.issuer, "/"));
  {
    absl::MutexLock lock(&mu_);
    auto it = discovered_.find(issuer);
    if (it != discovered_.end()) return it->second;
  }
  HttpRequest request;
  request.method = "GET";
  request.url = issuer + "/.well-known/openid-configuration";
  request.headers = {{"Accept", "application/json"}};
  absl::StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) return response.status();
  google::protobuf::Struct doc;
  if (response->status != 200 || !google::protobuf::util::JsonStringToMessage(response->body, &doc).ok()) {
    return absl::UnavailableError(absl::StrCat("OIDC discovery at ", request.url, " answered HTTP ", response->status,
                                               " without a JSON document"));
  }
  auto field = [&doc](const char* name) {
    auto it = doc.fields().find(name);
    return it == doc.fields().end() ? std::string() : it->second.string_value();
  };
  if (std::string(absl::StripSuffix(field("issuer"), "/")) != issuer) {
    return absl::FailedPreconditionError(absl::StrCat("OIDC discovery at ", request.url, " names issuer \"",
                                                      field("issuer"), "\", not the app's issuer"));
  }
  const std::string endpoint = field("token_endpoint");
  if (endpoint.empty()) return absl::FailedPreconditionError("the OIDC discovery document has no token_endpoint");
  absl::MutexLock lock(&mu_);
  discovered_[issuer] = endpoint;
  return endpoint;
}

TokenReply OidcProvider::RequestToken(const TokenRequest& r) {
  absl::StatusOr<std::string> endpoint = TokenEndpoint(*r.app);
  if (!endpoint.ok()) {
    TokenReply reply;
    reply.failure = absl::IsUnavailable(endpoint.status())
                        ? TransportFailure(endpoint.status())
                        : ProviderFailure{FailureKind::kAppConfiguration, "discovery", 0,
                                          std::string(endpoint.status().message()), 0, absl::ZeroDuration()};
    return reply;
  }
  std::vector<std::pair<std::string, std::string>> form = {{"client_id", r.app->client_id}};
  if (r.grant->kind == GrantKind::kDelegated) {
    form.emplace_back("grant_type", "refresh_token");
    form.emplace_back("refresh_token", std::string(r.refresh_token->Reveal()));
  } else {
    form.emplace_back("grant_type", "client_credentials");
  }
  if (!r.grant->scopes.empty()) form.emplace_back("scope", absl::StrJoin(r.grant->scopes, " "));
  if (r.credential->kind == CredentialKind::kCertificate) {
    absl::StatusOr<Secret> assertion =
        SignClientAssertion(*r.app, *r.credential, *r.credential_secret, *endpoint, clock_.Now());
    if (!assertion.ok()) return CredentialFailure(assertion.status().message());
    form.emplace_back("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    form.emplace_back("client_assertion", std::string(assertion->Reveal()));
  } else {
    form.emplace_back("client_secret", std::string(r.credential_secret->Reveal()));
  }
  return PostTokenForm(http_, *endpoint, std::move(form), clock_.Now());
}

}  // namespace tokenbroker
