// TokenMessages: the request and response of every GetAccessToken call.
//
// When gRPC is done with a call, the access token and the XOAUTH2 string that
// carries it are wiped in the response, and the call's messages go back to a
// free list to serve a later call. Their strings keep their (wiped) buffers,
// so a cache hit allocates almost nothing: a buffer allocated on the handler's
// thread and freed on gRPC's would miss glibc's per-thread cache.
// Thread-safe.
#ifndef TOKENBROKER_SERVICE_API_TOKEN_MESSAGES_H_
#define TOKENBROKER_SERVICE_API_TOKEN_MESSAGES_H_

#include <grpcpp/support/message_allocator.h>

#include <cstddef>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tokenbroker/v1/token_service.pb.h"

namespace tokenbroker {

class TokenMessages final
    : public grpc::MessageAllocator<v1::GetAccessTokenRequest, v1::GetAccessTokenResponse> {
 public:
  // At most this many calls' messages wait on the free list; more are freed.
  static constexpr size_t kMaxFree = 256;

  TokenMessages() = default;
  TokenMessages(const TokenMessages&) = delete;
  TokenMessages& operator=(const TokenMessages&) = delete;
  // Every call's messages must have been released.
  ~TokenMessages() override;

  // Empty messages for a call: from the free list, or new.
  grpc::MessageHolder<v1::GetAccessTokenRequest, v1::GetAccessTokenResponse>* AllocateMessages() override;

 private:
  class Holder;
  // Takes back a released holder (its secrets wiped).
  void Return(Holder* holder);

  absl::Mutex mu_;
  std::vector<Holder*> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_TOKEN_MESSAGES_H_
