// BrokerClient: a small C++ client for tokenbrokerd over the generated stubs.
//
// Every call gets a deadline. Idempotent calls (health, Get*/List*, token and
// mail reads) are retried on UNAVAILABLE with exponential backoff by gRPC's
// retry policy; changes are never retried. TLS and mTLS are options, and a
// bearer token file adds `authorization: Bearer ...` to every call.
// Thread-safe: one client may be shared.
#ifndef TOKENBROKER_CLIENT_BROKER_CLIENT_H_
#define TOKENBROKER_CLIENT_BROKER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "service/common/secret.h"
#include "tokenbroker/v1/admin_service.grpc.pb.h"
#include "tokenbroker/v1/mail_service.grpc.pb.h"
#include "tokenbroker/v1/token_service.grpc.pb.h"

namespace tokenbroker {

struct ClientOptions {
  // A gRPC target: "host:port", "dns:///host:port" or "unix:/path".
  std::string target = "127.0.0.1:50051";
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(10);
  // Attempts for idempotent calls that fail with UNAVAILABLE (1 = no retry).
  int max_attempts = 4;
  // TLS: on when `use_tls` or any of the files is set.
  bool use_tls = false;
  // CA bundle to verify the broker's certificate (default: system roots).
  std::string ca_file;
  // Client certificate and key for mTLS.
  std::string cert_file;
  std::string key_file;
  // Host name expected in the broker's certificate, when it differs from the
  // target's.
  std::string server_name;
  // A file holding a bearer token sent with every call.
  std::string bearer_token_file;
};

// The gRPC service config that retries idempotent methods on UNAVAILABLE.
std::string RetryServiceConfig(int max_attempts);

// An absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

class BrokerClient {
 public:
  // Fails with INVALID_ARGUMENT when a TLS or token file cannot be read.
  static absl::StatusOr<std::unique_ptr<BrokerClient>> Create(const ClientOptions& options);

  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(const std::string& service = "");
  absl::StatusOr<v1::ServerInfo> GetServerInfo();
  absl::StatusOr<v1::GetAccessTokenResponse> GetAccessToken(const v1::GetAccessTokenRequest& request);

  // For calls without a wrapper: a context with the deadline and credentials
  // set, and the stubs.
  // `timeout` replaces the configured one when set.
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout = absl::ZeroDuration()) const;
  v1::AdminService::Stub& admin() { return *admin_; }
  v1::TokenService::Stub& tokens() { return *tokens_; }
  v1::MailService::Stub& mail() { return *mail_; }

 private:
  BrokerClient(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel, Secret bearer_token);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  Secret bearer_token_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::TokenService::Stub> tokens_;
  std::unique_ptr<v1::MailService::Stub> mail_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_CLIENT_BROKER_CLIENT_H_
