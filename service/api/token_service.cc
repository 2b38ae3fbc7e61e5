#include "service/api/token_service.h"

#include "service/api/reactors.h"

namespace tokenbroker {

grpc::ServerUnaryReactor* TokenServiceImpl::GetAccessToken(grpc::CallbackServerContext* context,
                                                           const v1::GetAccessTokenRequest*,
                                                           v1::GetAccessTokenResponse*) {
  return FinishUnary(context, NotYetAvailable("GetAccessToken", "token issuance arrives with the token engine"));
}

}  // namespace tokenbroker
