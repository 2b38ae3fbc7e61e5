#include "service/common/time_util.h"
#include "service/api/token_service.h"

#include "absl/strings/str_cat.h"
#include "service/api/convert.h"
#include "service/api/reactors.h"
#include "service/common/status_macros.h"

namespace tokenbroker {

grpc::ServerUnaryReactor* TokenServiceImpl::GetAccessToken(grpc::CallbackServerContext* context,
                                                           const v1::GetAccessTokenRequest* request,
                                                           v1::GetAccessTokenResponse* response) {
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId("grant", request->grant()));
    absl::Duration min_valid = absl::Minutes(5);
    if (request->has_min_valid_for()) {
      min_valid = FromProtoDuration(request->min_valid_for());
      if (min_valid < absl::ZeroDuration() || min_valid > absl::Hours(1)) {
        return absl::InvalidArgumentError("min_valid_for: must be between 0 and 1h");
      }
    }
    ASSIGN_OR_RETURN(AccessToken token, tokens_->GetAccessToken(request->grant(), min_valid));
    response->set_access_token(std::string(token.token.Reveal()));
    *response->mutable_expire_time() = ToTimestamp(token.expire_time);
    response->set_token_type(token.token_type);
    response->set_mailbox(token.mailbox);
    for (const std::string& scope : token.scopes) response->add_scopes(scope);
    response->set_sasl_xoauth2(std::string(token.sasl_xoauth2.Reveal()));
    return absl::OkStatus();
  }();
  return FinishUnary(context, ToGrpcStatus(status));
}

}  // namespace tokenbroker
