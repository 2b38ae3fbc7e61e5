// tokenbroker.v1.TokenService over the callback API.
#ifndef TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_
#define TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_

#include "service/tokens/token_manager.h"
#include "tokenbroker/v1/token_service.grpc.pb.h"

namespace tokenbroker {

class TokenServiceImpl final : public v1::TokenService::CallbackService {
 public:
  // `tokens` must outlive the service.
  explicit TokenServiceImpl(TokenManager* tokens) : tokens_(tokens) {}

  grpc::ServerUnaryReactor* GetAccessToken(grpc::CallbackServerContext* context,
                                           const v1::GetAccessTokenRequest* request,
                                           v1::GetAccessTokenResponse* response) override;

 private:
  TokenManager* tokens_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_
