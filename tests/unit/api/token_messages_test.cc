#include "service/api/token_messages.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

using Holder = grpc::MessageHolder<v1::GetAccessTokenRequest, v1::GetAccessTokenResponse>;

// Whether all of `s`'s buffer, up to its capacity, is zero bytes.
bool BufferIsZero(const std::string& s, size_t capacity) {
  for (size_t i = 0; i < capacity; ++i) {
    if (s.data()[i] != '\0') return false;
  }
  return true;
}

TEST(TokenMessagesTest, AReleasedTokenIsWipedAndItsMessagesServeTheNextCallEmpty) {
  TokenMessages messages;
  Holder* first = messages.AllocateMessages();
  first->request()->set_grant("robot");
  v1::GetAccessTokenResponse* response = first->response();
  response->set_access_token(std::string(1200, 'T'));
  response->set_sasl_xoauth2(std::string(1700, 'S'));
  response->set_mailbox("robot@contoso.com");
  response->add_scopes("https://outlook.office365.com/.default");
  response->mutable_expire_time()->set_seconds(1'800'000'000);
  const size_t token_capacity = response->access_token().capacity();
  const size_t sasl_capacity = response->sasl_xoauth2().capacity();
  const google::protobuf::Timestamp* expire_time = &response->expire_time();
  first->Release();

  Holder* second = messages.AllocateMessages();
  ASSERT_EQ(second, first);
  EXPECT_EQ(second->request()->ByteSizeLong(), 0u);
  // Empty but for the expire_time every response sets: kept (zero) for it.
  v1::GetAccessTokenResponse empty;
  empty.mutable_expire_time();
  EXPECT_EQ(second->response()->SerializeAsString(), empty.SerializeAsString());
  EXPECT_EQ(&second->response()->expire_time(), expire_time);
  // The strings kept their buffers, and nothing of the token is left in them.
  ASSERT_EQ(second->response()->access_token().capacity(), token_capacity);
  ASSERT_EQ(second->response()->sasl_xoauth2().capacity(), sasl_capacity);
  EXPECT_TRUE(BufferIsZero(second->response()->access_token(), token_capacity));
  EXPECT_TRUE(BufferIsZero(second->response()->sasl_xoauth2(), sasl_capacity));
  second->Release();
}

TEST(TokenMessagesTest, BeyondTheFreeListReleasedMessagesAreFreed) {
  TokenMessages messages;
  std::vector<Holder*> calls;
  for (size_t i = 0; i < TokenMessages::kMaxFree + 10; ++i) calls.push_back(messages.AllocateMessages());
  for (Holder* call : calls) call->Release();
  // The free list serves kMaxFree calls; LeakSanitizer checks the 10 others
  // were freed, and the destructor frees the list.
  std::vector<Holder*> again;
  for (size_t i = 0; i < TokenMessages::kMaxFree; ++i) again.push_back(messages.AllocateMessages());
  for (Holder* call : again) {
    EXPECT_NE(std::find(calls.begin(), calls.end(), call), calls.end());
    call->Release();
  }
}

}  // namespace
}  // namespace tokenbroker
