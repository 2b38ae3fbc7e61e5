#include "service/api/token_messages.h"

#include "service/common/secret.h"

namespace tokenbroker {

class TokenMessages::Holder final
    : public grpc::MessageHolder<v1::GetAccessTokenRequest, v1::GetAccessTokenResponse> {
 public:
  explicit Holder(TokenMessages* owner) : owner_(owner) {
    set_request(&request_);
    set_response(&response_);
  }

  // gRPC is done with the call: wipe the secrets, empty the messages (their
  // strings keep their buffers, and the response its expire_time, which every
  // response that goes out sets) and go back to the free list.
  void Release() override {
    WipeString(*response_.mutable_access_token());
    WipeString(*response_.mutable_sasl_xoauth2());
    request_.Clear();
    google::protobuf::Timestamp* expire_time = response_.release_expire_time();
    response_.Clear();
    if (expire_time != nullptr) {
      expire_time->Clear();
      response_.set_allocated_expire_time(expire_time);
    }
    owner_->Return(this);
  }
  // The request stays until Release.
  void FreeRequest() override {}

 private:
  TokenMessages* const owner_;
  v1::GetAccessTokenRequest request_;
  v1::GetAccessTokenResponse response_;
};

TokenMessages::~TokenMessages() {
  absl::MutexLock lock(&mu_);
  for (Holder* holder : free_) delete holder;
}

grpc::MessageHolder<v1::GetAccessTokenRequest, v1::GetAccessTokenResponse>* TokenMessages::AllocateMessages() {
  {
    absl::MutexLock lock(&mu_);
    if (!free_.empty()) {
      Holder* holder = free_.back();
      free_.pop_back();
      return holder;
    }
  }
  return new Holder(this);
}

void TokenMessages::Return(Holder* holder) {
  {
    absl::MutexLock lock(&mu_);
    if (free_.size() < kMaxFree) {
      free_.push_back(holder);
      return;
    }
  }
  delete holder;
}

}  // namespace tokenbroker
