// tokenbroker.v1.TokenService over the callback API.
#ifndef TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_
#define TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_

#include "service/api/call_guard.h"
#include "service/api/token_messages.h"
#include "service/common/executor.h"
#include "service/tokens/token_manager.h"
#include "tokenbroker/v1/token_service.grpc.pb.h"

namespace tokenbroker {

// A cached token is answered on the gRPC callback thread at once; a call
// that needs a refresh (an identity-provider request, seconds in the worst
// case) is finished from `refresh_threads` workers, so that a slow provider
// never ties up the threads that serve cache hits. With `max_pending` calls
// already running on or waiting for a worker, callers get RESOURCE_EXHAUSTED.
class TokenServiceImpl final : public v1::TokenService::CallbackService {
 public:
  // `tokens` and `guard` must outlive the service.
  TokenServiceImpl(TokenManager* tokens, CallGuard* guard, int refresh_threads = 8, size_t max_pending = 10000)
      : tokens_(tokens), guard_(guard), refreshes_(refresh_threads, max_pending) {
    SetMessageAllocatorFor_GetAccessToken(&messages_);
  }

  grpc::ServerUnaryReactor* GetAccessToken(grpc::CallbackServerContext* context,
                                           const v1::GetAccessTokenRequest* request,
                                           v1::GetAccessTokenResponse* response) override;

 private:
  // Each call's request and response; the token wiped when gRPC is done.
  TokenMessages messages_;
  TokenManager* tokens_;
  CallGuard* guard_;
  // Declared last: stopped (every waiting call finished) before the rest goes.
  Executor refreshes_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_TOKEN_SERVICE_H_
