#include "client/broker_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/support/in_process_server.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions options;
    options.target = server_.address();
    client_ = *BrokerClient::Create(options);
  }
  std::string Scrape() {
    return prometheus::TextSerializer().Serialize(server_.metrics().registry()->Collect());
  }

  testing::InProcessServer server_;
  std::unique_ptr<BrokerClient> client_;
};

TEST_F(ApiTest, GetServerInfoReportsTheIdentity) {
  absl::StatusOr<v1::ServerInfo> info = client_->GetServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), "9.9.9");
  EXPECT_EQ(info->revision(), "test");
  EXPECT_EQ(info->store(), "sqlite");
  EXPECT_EQ(info->active_key_id(), "k1");
  EXPECT_EQ(info->start_time().seconds(), 1'800'000'000);
}

TEST_F(ApiTest, LaterCapabilitiesAnswerUnimplementedNamingThem) {
  v1::GetAccessTokenRequest request;
  request.set_grant("g1");
  absl::Status s = client_->GetAccessToken(request).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "GetAccessToken is not available in this version of tokenbrokerd: token issuance arrives "
                         "with the token engine");

  auto context = client_->NewContext();
  v1::FetchMessageRequest fetch;
  auto reader = client_->mail().FetchMessage(context.get(), fetch);
  v1::FetchMessageResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(status.error_message(), HasSubstr("FetchMessage"));
}

TEST_F(ApiTest, EveryCallIsCountedByMethodAndCode) {
  ASSERT_TRUE(client_->GetServerInfo().ok());
  ASSERT_TRUE(client_->GetServerInfo().ok());
  (void)client_->GetAccessToken(v1::GetAccessTokenRequest());
  ASSERT_TRUE(client_->CheckHealth().ok());
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"tokenbroker.v1.AdminService/"
                              "GetServerInfo\"} 2"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"UNIMPLEMENTED\",method=\"tokenbroker.v1."
                              "TokenService/GetAccessToken\"} 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"grpc.health.v1.Health/Check\"} 1"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_request_duration_seconds_count{method=\"tokenbroker.v1.AdminService/"
                              "GetServerInfo\"} 2"));
}

TEST_F(ApiTest, UnregisteredMethodsAreCountedAsUnknown) {
  ASSERT_TRUE(client_->GetServerInfo().ok());
  // ListApps is served but not in this server's metric label set.
  auto context = client_->NewContext();
  v1::ListAppsResponse response;
  grpc::Status status = client_->admin().ListApps(context.get(), v1::ListAppsRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Scrape(), HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"unknown\"} 1"));
}

TEST(BrokerClientTest, AnUnreachableBrokerIsUnavailable) {
  ClientOptions options;
  options.target = "127.0.0.1:1";  // nothing listens on port 1
  options.timeout = absl::Seconds(5);
  auto client = *BrokerClient::Create(options);
  absl::Status s = client->CheckHealth().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

TEST(BrokerClientTest, UnreadableTlsFilesAreReportedAtCreation) {
  ClientOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  absl::Status s = BrokerClient::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("/nonexistent/ca.pem"));
  options.ca_file.clear();
  options.cert_file = "/tmp/only-a-cert.pem";
  EXPECT_THAT(std::string(BrokerClient::Create(options).status().message()), HasSubstr("--key-file"));
}

TEST(BrokerClientTest, RetryConfigCoversOnlyIdempotentMethods) {
  const std::string config = RetryServiceConfig(4);
  EXPECT_THAT(config, HasSubstr("\"maxAttempts\":4"));
  EXPECT_THAT(config, HasSubstr("GetAccessToken"));
  EXPECT_THAT(config, ::testing::Not(HasSubstr("Create")));
  EXPECT_THAT(config, ::testing::Not(HasSubstr("Delete")));
  EXPECT_THAT(config, ::testing::Not(HasSubstr("RotateKeys")));
  EXPECT_EQ(RetryServiceConfig(1), "{}");
}

}  // namespace
}  // namespace tokenbroker
