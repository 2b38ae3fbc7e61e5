#include "service/idp/provider.h"

#include "absl/strings/str_cat.h"

namespace tokenbroker {

absl::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kTransient:
      return "transient";
    case FailureKind::kThrottled:
      return "throttled";
    case FailureKind::kNeedsReconsent:
      return "invalid_grant";
    case FailureKind::kInvalidClient:
      return "invalid_client";
    case FailureKind::kAppConfiguration:
      return "app_configuration";
  }
  return "transient";
}

absl::StatusOr<std::string> IdentityProvider::AuthorizationUrl(const App& app, const Grant&,
                                                               const AuthorizationUrlRequest&) {
  return absl::FailedPreconditionError(absl::StrCat("the authorization-code flow is not available for ",
                                                    ProviderName(app.provider), " apps"));
}

DeviceAuthorizationReply IdentityProvider::StartDeviceAuthorization(const TokenRequest& request) {
  DeviceAuthorizationReply reply;
  reply.failure.kind = FailureKind::kAppConfiguration;
  reply.failure.oauth_error = "unsupported";
  reply.failure.message = absl::StrCat("the device-code flow is not available for ",
                                       ProviderName(request.app->provider),
                                       " apps; use the authorization-code flow (`tokenbrokerctl consent begin`)");
  return reply;
}

}  // namespace tokenbroker
