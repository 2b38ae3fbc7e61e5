#include "service/idp/oidc_provider.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/idp/oauth_reply.h"
#include "service/idp/token_form.h"

namespace tokenbroker {
namespace {

TokenReply DiscoveryFailure(const absl::Status& status) {
  TokenReply reply;
  reply.failure = absl::IsUnavailable(status)
                      ? TransportFailure(status)
                      : ProviderFailure{FailureKind::kAppConfiguration, "discovery", 0, std::string(status.message()),
                                        0, absl::ZeroDuration()};
  return reply;
}

}  // namespace

absl::StatusOr<OidcProvider::Endpoints> OidcProvider::Discover(const App& app) {
  const std::string issuer(absl::StripSuffix(app.issuer, "/"));
  {
    absl::MutexLock lock(&mu_);
    auto it = discovered_.find(issuer);
    if (it != discovered_.end()) return it->second;
  }
  if (issuer.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("app \"", app.id, "\" has neither an issuer nor explicit endpoints"));
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
  auto field = [&doc](const char* name) { return JsonString(doc, name); };
  if (std::string(absl::StripSuffix(field("issuer"), "/")) != issuer) {
    return absl::FailedPreconditionError(absl::StrCat("OIDC discovery at ", request.url, " names issuer \"",
                                                      field("issuer"), "\", not the app's issuer"));
  }
  Endpoints endpoints{field("token_endpoint"), field("authorization_endpoint"),
                      field("device_authorization_endpoint")};
  if (endpoints.token.empty()) return absl::FailedPreconditionError("the OIDC discovery document has no token_endpoint");
  absl::MutexLock lock(&mu_);
  discovered_[issuer] = endpoints;
  return endpoints;
}

absl::StatusOr<std::string> OidcProvider::Endpoint(const App& app, std::string App::*explicit_endpoint,
                                                   std::string Endpoints::*discovered, absl::string_view name) {
  if (!(app.*explicit_endpoint).empty()) return app.*explicit_endpoint;
  absl::StatusOr<Endpoints> endpoints = Discover(app);
  if (!endpoints.ok()) return endpoints.status();
  if ((*endpoints).*discovered == "") {
    return absl::FailedPreconditionError(absl::StrCat("the OIDC provider of app \"", app.id, "\" has no ", name,
                                                      "; set it in the app's oidc_endpoints"));
  }
  return (*endpoints).*discovered;
}

absl::StatusOr<std::string> OidcProvider::TokenEndpoint(const App& app) {
  return Endpoint(app, &App::token_endpoint, &Endpoints::token, "token_endpoint");
}

TokenReply OidcProvider::RequestToken(const TokenRequest& r) {
  absl::StatusOr<std::string> endpoint = TokenEndpoint(*r.app);
  if (!endpoint.ok()) return DiscoveryFailure(endpoint.status());
  FormFields form;
  std::vector<std::pair<std::string, std::string>> headers;
  if (auto failed = AuthenticateClient(r, *endpoint, clock_.Now(), form, headers)) return *std::move(failed);
  AppendGrantParameters(r, form);
  return PostTokenForm(http_, *endpoint, std::move(form), clock_.Now(), std::move(headers));
}

absl::StatusOr<std::string> OidcProvider::AuthorizationUrl(const App& app, const Grant& grant,
                                                           const AuthorizationUrlRequest& request) {
  absl::StatusOr<std::string> endpoint =
      Endpoint(app, &App::authorization_endpoint, &Endpoints::authorization, "authorization_endpoint");
  if (!endpoint.ok()) return endpoint.status();
  return BuildAuthorizationUrl(*endpoint, app, grant, request);
}

DeviceAuthorizationReply OidcProvider::StartDeviceAuthorization(const TokenRequest& r) {
  DeviceAuthorizationReply reply;
  absl::StatusOr<std::string> endpoint = Endpoint(*r.app, &App::device_authorization_endpoint,
                                                  &Endpoints::device_authorization, "device_authorization_endpoint");
  absl::StatusOr<std::string> token_endpoint = TokenEndpoint(*r.app);
  if (!endpoint.ok() || !token_endpoint.ok()) {
    reply.failure = DiscoveryFailure(endpoint.ok() ? token_endpoint.status() : endpoint.status()).failure;
    return reply;
  }
  // A confidential client authenticates here as at the token endpoint.
  FormFields form;
  std::vector<std::pair<std::string, std::string>> headers;
  if (auto failed = AuthenticateClient(r, *token_endpoint, clock_.Now(), form, headers)) {
    reply.failure = failed->failure;
    return reply;
  }
  if (!r.grant->scopes.empty()) form.emplace_back("scope", absl::StrJoin(r.grant->scopes, " "));
  return PostDeviceAuthorization(http_, *endpoint, std::move(form), std::move(headers), clock_.Now());
}

}  // namespace tokenbroker
