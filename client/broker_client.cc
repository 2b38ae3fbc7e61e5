#include "client/broker_client.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "service/common/files.h"

namespace tokenbroker {
namespace {

absl::StatusOr<std::string> ReadOptionFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string RetryServiceConfig(int max_attempts) {
  if (max_attempts < 2) return "{}";
  if (max_attempts > 5) max_attempts = 5;  // gRPC's own cap
  return absl::StrCat(R"({"methodConfig":[{"name":[)",
                      R"({"service":"grpc.health.v1.Health","method":"Check"},)",
                      R"({"service":"tokenbroker.v1.TokenService","method":"GetAccessToken"},)",
                      R"({"service":"tokenbroker.v1.MailService"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"GetServerInfo"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"GetApp"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"ListApps"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"GetGrant"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"ListGrants"},)",
                      R"({"service":"tokenbroker.v1.AdminService","method":"ListAuditEvents"}],)",
                      R"("retryPolicy":{"maxAttempts":)", max_attempts,
                      R"(,"initialBackoff":"0.1s","maxBackoff":"2s","backoffMultiplier":2,)",
                      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<std::unique_ptr<BrokerClient>> BrokerClient::Create(const ClientOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  const bool tls = options.use_tls || !options.ca_file.empty() || !options.cert_file.empty();
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadOptionFile("CA file", options.ca_file);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs both --cert-file and --key-file");
    }
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadOptionFile("certificate file", options.cert_file);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadOptionFile("key file", options.key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
      WipeString(*key);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  Secret bearer;
  if (!options.bearer_token_file.empty()) {
    absl::StatusOr<Secret> token = ReadSecretFile(options.bearer_token_file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(absl::IsInvalidArgument(token.status())
                                            ? absl::StrCat("token file ", token.status().message())
                                            : absl::StrCat("cannot read token file ", options.bearer_token_file));
    }
    bearer = std::move(*token);
  }
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(RetryServiceConfig(options.max_attempts));
  if (!options.server_name.empty()) args.SetSslTargetNameOverride(options.server_name);
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<BrokerClient>(new BrokerClient(options, std::move(channel), std::move(bearer)));
}

BrokerClient::BrokerClient(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel, Secret bearer_token)
    : options_(options),
      channel_(std::move(channel)),
      bearer_token_(std::move(bearer_token)),
      health_(grpc::health::v1::Health::NewStub(channel_)),
      admin_(v1::AdminService::NewStub(channel_)),
      tokens_(v1::TokenService::NewStub(channel_)),
      mail_(v1::MailService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> BrokerClient::NewContext(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + (timeout > absl::ZeroDuration() ? timeout : options_.timeout)));
  if (!bearer_token_.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", bearer_token_.Reveal()));
  }
  return context;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> BrokerClient::CheckHealth(
    const std::string& service) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = NewContext();
  grpc::Status status = health_->Check(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status();
}

absl::StatusOr<v1::ServerInfo> BrokerClient::GetServerInfo() {
  v1::ServerInfo response;
  auto context = NewContext();
  grpc::Status status = admin_->GetServerInfo(context.get(), v1::GetServerInfoRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::GetAccessTokenResponse> BrokerClient::GetAccessToken(const v1::GetAccessTokenRequest& request) {
  v1::GetAccessTokenResponse response;
  auto context = NewContext();
  grpc::Status status = tokens_->GetAccessToken(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

}  // namespace tokenbroker
