#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/broker_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "service/tokens/token_manager.h"
#include "tests/support/credentials.h"
#include "tests/support/in_process_server.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

// A client of `server` with the default options.
std::unique_ptr<BrokerClient> ClientOf(testing::InProcessServer& server) {
  ClientOptions options;
  options.target = server.address();
  return *BrokerClient::Create(options);
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = ClientOf(server_);
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

// Four app-only grants of one app whose secret the fake provider accepts.
void EnrolRobots(testing::InProcessServer& server);

TEST_F(ApiTest, GetAccessTokenReturnsATokenTheSaslStringAndTheMailbox) {
  EnrolRobots(server_);
  v1::GetAccessTokenRequest request;
  request.set_grant("robot");
  absl::StatusOr<v1::GetAccessTokenResponse> r = client_->GetAccessToken(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(server_.idp().UserOfAccessToken(r->access_token()), "app:client-1");
  EXPECT_EQ(r->mailbox(), "robot@contoso.com");
  EXPECT_EQ(r->token_type(), "Bearer");
  EXPECT_EQ(r->sasl_xoauth2(), std::string(SaslXoauth2("robot@contoso.com", Secret::CopyFrom(r->access_token())).Reveal()));
  EXPECT_NEAR(static_cast<double>(r->expire_time().seconds() - absl::ToUnixSeconds(absl::Now())), 3599, 5);
  EXPECT_THAT(Scrape(), HasSubstr("tokenbroker_token_requests_total{result=\"refreshed\"}"));

  request.set_grant("nobody");
  EXPECT_EQ(client_->GetAccessToken(request).status().code(), absl::StatusCode::kNotFound);
  request.set_grant("Bad Grant");
  absl::Status bad = client_->GetAccessToken(request).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("grant: "));
  request.set_grant("robot");
  request.mutable_min_valid_for()->set_seconds(7200);
  absl::Status too_long = client_->GetAccessToken(request).status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(too_long.message(), "min_valid_for: must be between 0 and 1h");
}

// Each call's messages are reused by later calls (token_messages.h): a
// response holds its own call's grant only, scopes included, with callers of
// four grants at once.
TEST_F(ApiTest, ResponsesCarryNothingFromAnEarlierCall) {
  EnrolRobots(server_);
  const std::vector<std::string> grants = {"robot", "robot-2", "robot-3", "robot-4"};
  std::vector<std::string> first;
  for (const std::string& grant : grants) {
    v1::GetAccessTokenRequest request;
    request.set_grant(grant);
    absl::StatusOr<v1::GetAccessTokenResponse> r = client_->GetAccessToken(request);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->scopes().empty());
    first.push_back(r->SerializeAsString());
  }
  std::vector<std::thread> callers;
  for (size_t g = 0; g < grants.size(); ++g) {
    callers.emplace_back([&, g] {
      v1::GetAccessTokenRequest request;
      request.set_grant(grants[g]);
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<v1::GetAccessTokenResponse> r = client_->GetAccessToken(request);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->SerializeAsString(), first[g]) << grants[g] << ", call " << i << ": " << r->mailbox();
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
}

void EnrolRobots(testing::InProcessServer& server) {
  server.idp().RegisterApp("contoso.onmicrosoft.com", "client-1", "the-secret");
  App app;
  app.id = "contoso";
  app.tenant = "contoso.onmicrosoft.com";
  app.client_id = "client-1";
  std::vector<CredentialInput> creds = testing::ClientSecretCredentials("s1", "the-secret", absl::Now() + absl::Hours(100));
  ASSERT_TRUE(server.vault().CreateApp(app, std::move(creds)).ok());
  for (const char* id : {"robot", "robot-2", "robot-3", "robot-4"}) {
    Grant g;
    g.id = id;
    g.app = "contoso";
    g.mailbox = std::string(id) + "@contoso.com";
    g.kind = GrantKind::kAppOnly;
    ASSERT_TRUE(server.vault().CreateGrant(g).ok());
  }
}

TEST(TokenServiceTest, CacheHitsAreServedWhileARefreshWaitsForASlowProvider) {
  // One refresh worker, one call at a time.
  testing::InProcessServer server(1, 1);
  EnrolRobots(server);
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  v1::GetAccessTokenRequest cached;
  cached.set_grant("robot");
  ASSERT_TRUE(client->GetAccessToken(cached).ok());

  // The provider stalls with one refresh in it: another refresh is refused
  // at once with a retry hint, and the cached grant is still served. (The
  // robots share their app's token: asking for an hour's validity, more than
  // it has left, makes each call a provider request.)
  server.idp().Hold(true);
  absl::Status slow;
  std::thread waiting([&] {
    v1::GetAccessTokenRequest r;
    r.set_grant("robot-2");
    r.mutable_min_valid_for()->set_seconds(3600);
    // The worker is free a moment after the first call's answer: until then
    // this call is refused at once, and tried again.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    do {
      slow = client->GetAccessToken(r).status();
    } while (absl::IsResourceExhausted(slow) && absl::Now() < deadline);
  });
  ASSERT_TRUE(server.idp().WaitForHeldRequests(1, absl::Seconds(30)));
  v1::GetAccessTokenRequest other;
  other.set_grant("robot-3");
  other.mutable_min_valid_for()->set_seconds(3600);
  absl::Status refused = client->GetAccessToken(other).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("waiting for an identity provider; retry"));
  absl::StatusOr<v1::GetAccessTokenResponse> hit = client->GetAccessToken(cached);
  EXPECT_TRUE(hit.ok()) << hit.status();
  server.idp().Hold(false);
  waiting.join();
  EXPECT_TRUE(slow.ok()) << slow;
  // The worker is free again once it has returned from the finished call
  // (a moment after the caller got its answer).
  absl::Status again = absl::ResourceExhaustedError("not tried");
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30);
       absl::IsResourceExhausted(again) && absl::Now() < deadline;) {
    again = client->GetAccessToken(other).status();
  }
  EXPECT_TRUE(again.ok()) << again;
}

TEST_F(ApiTest, ListGrantsComesInPagesAndTheClientFollowsThem) {
  EnrolRobots(server_);
  server_.AddBulkGrants("contoso", 2100);
  v1::ListGrantsRequest request;
  std::vector<std::string> ids;
  int pages = 0;
  do {
    v1::ListGrantsResponse page;
    auto context = client_->NewContext();
    grpc::Status status = client_->admin().ListGrants(context.get(), request, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ++pages;
    for (const v1::Grant& g : page.grants()) ids.push_back(g.id());
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);  // 2104 grants, 1000 a page
  ASSERT_EQ(ids.size(), 2104u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size()) << "a grant came twice";

  v1::ListGrantsResponse unused;
  request.set_page_token("not-a-token!");
  auto context = client_->NewContext();
  grpc::Status bad = client_->admin().ListGrants(context.get(), request, &unused);
  EXPECT_EQ(bad.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("page_token"));
  request.set_page_token("");
  request.set_page_size(1001);
  context = client_->NewContext();
  bad = client_->admin().ListGrants(context.get(), request, &unused);
  EXPECT_EQ(bad.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("page_size: at most 1000"));
}

// `current` lists every grant that needs someone, across the store's pages
// (1000 grants each), each once.
TEST_F(ApiTest, AWatchWithCurrentListsEveryStuckGrantFirst) {
  EnrolRobots(server_);
  server_.AddBulkGrants("contoso", 1500);
  for (int i = 0; i < 1200; ++i) {
    ASSERT_TRUE(server_.vault()
                    .ApplyGrantEvent(absl::StrCat("bulk-", 10000 + i), GrantEvent::kCredentialsRefused,
                                     ProviderError{"invalid_client", 7000222, "the client secret has expired", {}})
                    .ok());
  }
  auto context = client_->NewContext();
  context->set_deadline(std::chrono::system_clock::time_point::max());
  v1::WatchGrantsRequest request;
  request.set_current(true);
  auto reader = client_->admin().WatchGrants(context.get(), request);
  std::set<std::string> stuck;
  v1::GrantChange change;
  while (stuck.size() < 1200 && reader->Read(&change)) {
    // The last of the changes above (grants created, then refused) may
    // still be on their way as live ones.
    if (!change.current()) continue;
    EXPECT_EQ(change.current_grant().state(), v1::GRANT_STATE_APP_CREDENTIAL_INVALID);
    EXPECT_THAT(change.action(), HasSubstr("tokenbrokerctl app add-credential contoso"));
    EXPECT_TRUE(stuck.insert(change.grant()).second) << change.grant() << " came twice";
  }
  EXPECT_EQ(stuck.size(), 1200u);
  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
}

TEST_F(ApiTest, MailCallsWithBadFieldsAreRefusedBeforeAnyWork) {
  auto context = client_->NewContext();
  v1::FetchMessageRequest fetch;
  auto reader = client_->mail().FetchMessage(context.get(), fetch);
  v1::FetchMessageResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("grant"));
  auto context2 = client_->NewContext();
  v1::GetFolderStatusRequest status_request;
  status_request.set_grant("robot");
  status_request.set_folder("INBOX\r\nt1 DELETE INBOX");
  v1::FolderStatus folder;
  grpc::Status crlf = client_->mail().GetFolderStatus(context2.get(), status_request, &folder);
  EXPECT_EQ(crlf.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(crlf.error_message(), "folder: must not contain CR, LF or NUL");
  auto context3 = client_->NewContext();
  v1::GetMessageRequest get;
  get.set_grant("robot");
  get.set_folder("INBOX");
  get.set_uid(1);
  get.set_part(v1::FetchMessageRequest::PART_SECTION);
  get.set_section("1 BODY[]");
  v1::GetMessageResponse message;
  grpc::Status section = client_->mail().GetMessage(context3.get(), get, &message);
  EXPECT_EQ(section.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(section.error_message(), HasSubstr("\"1 BODY[]\" is not a body part"));
}

TEST_F(ApiTest, EveryCallIsCountedByMethodAndCode) {
  ASSERT_TRUE(client_->GetServerInfo().ok());
  ASSERT_TRUE(client_->GetServerInfo().ok());
  v1::GetAccessTokenRequest missing;
  missing.set_grant("nobody");
  (void)client_->GetAccessToken(missing);
  ASSERT_TRUE(client_->CheckHealth().ok());
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"tokenbroker.v1.AdminService/"
                              "GetServerInfo\"} 2"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"NOT_FOUND\",method=\"tokenbroker.v1."
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

namespace tokenbroker {
namespace {

config::v1::AuthConfig CallerPolicy(const std::string& local_caller) {
  config::v1::AuthConfig auth;
  auth.set_local_caller(local_caller);
  auto* tokens = auth.add_rules();
  tokens->set_name("svc-a-tokens");
  tokens->add_callers("svc-a");
  tokens->add_actions("token.get");
  tokens->add_grants("robot");
  tokens->mutable_rate_limit()->set_per_second(0.001);
  tokens->mutable_rate_limit()->set_burst(3);
  auto* reads = auth.add_rules();
  reads->add_callers("svc-a");
  reads->add_actions("admin.read");
  reads->add_grants("robot-3");
  return auth;
}

class ApiPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = ClientOf(server_);
    EnrolRobots(server_);
  }
  std::vector<AuditEvent> Audit() {
    EXPECT_TRUE(server_.audit().Flush());
    return *server_.store().ListAuditEvents(AuditFilter{});
  }
  std::string Scrape() { return prometheus::TextSerializer().Serialize(server_.metrics().registry()->Collect()); }
  absl::Status Token(const std::string& grant) {
    v1::GetAccessTokenRequest request;
    request.set_grant(grant);
    return client_->GetAccessToken(request).status();
  }

  testing::InProcessServer server_{8, 10000, CallerPolicy("svc-a")};
  std::unique_ptr<BrokerClient> client_;
};

TEST_F(ApiPolicyTest, ACallerGetsItsGrantIsRefusedAnotherAndTheProviderSeesNothing) {
  ASSERT_TRUE(Token("robot").ok());
  EXPECT_EQ(server_.idp().requests(), 1);
  absl::Status other = Token("robot-2");
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(other.message(), "caller \"svc-a\" may not token.get on grant \"robot-2\" (no auth.rules entry allows it)");
  // Not even for a grant that does not exist: no existence is revealed.
  EXPECT_EQ(Token("nobody").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(server_.idp().requests(), 1);
  // Any known caller may ask for the server's version; changes are refused.
  EXPECT_TRUE(client_->GetServerInfo().ok());
  auto context = client_->NewContext();
  v1::DisableGrantRequest disable;
  disable.set_id("robot");
  v1::Grant grant;
  EXPECT_EQ(client_->admin().DisableGrant(context.get(), disable, &grant).error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(server_.vault().GetGrant("robot")->state, GrantState::kActive);
  // A list shows only the grants the caller may read.
  auto list_context = client_->NewContext();
  v1::ListGrantsResponse listed;
  ASSERT_TRUE(client_->admin().ListGrants(list_context.get(), v1::ListGrantsRequest(), &listed).ok());
  ASSERT_EQ(listed.grants_size(), 1);
  EXPECT_EQ(listed.grants(0).id(), "robot-3");

  std::vector<AuditEvent> events = Audit();
  ASSERT_EQ(events.size(), 4u);  // the token, two refused tokens, the refused change
  EXPECT_EQ(events.back().caller, "svc-a");  // the first call: the token
  EXPECT_EQ(events.back().action, "token.get");
  EXPECT_EQ(events.back().grant, "robot");
  EXPECT_EQ(events.back().result, "OK");
  EXPECT_EQ(events.front().action, "admin.write");  // the last: the refused change
  EXPECT_EQ(events.front().method, "AdminService/DisableGrant");
  EXPECT_EQ(events.front().result, "PERMISSION_DENIED");
  EXPECT_EQ(events.front().grant, "robot");
  for (const AuditEvent& e : events) {
    EXPECT_EQ(e.request_id.size(), 16u);
    EXPECT_THAT(e.detail, ::testing::Not(HasSubstr("the-secret")));
  }
  EXPECT_THAT(Scrape(), HasSubstr("tokenbroker_calls_refused_total{action=\"token.get\",reason=\"permission_denied\"} 2"));
}

// WatchGrants holds only the grants the caller may admin.read, in the order
// the changes were made.
TEST_F(ApiPolicyTest, AWatchHearsOnlyTheGrantsTheCallerMayRead) {
  auto context = client_->NewContext();
  context->set_deadline(std::chrono::system_clock::time_point::max());
  auto reader = client_->admin().WatchGrants(context.get(), v1::WatchGrantsRequest());
  reader->WaitForInitialMetadata();  // the watch is live
  ASSERT_TRUE(server_.vault().SetGrantEnabled("robot", false).ok());
  ASSERT_TRUE(server_.vault().SetGrantEnabled("robot-3", false).ok());
  v1::GrantChange change;
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.grant(), "robot-3") << "robot's change came first and is not the caller's to see";
  EXPECT_EQ(change.previous_state(), v1::GRANT_STATE_ACTIVE);
  EXPECT_EQ(change.current_grant().state(), v1::GRANT_STATE_DISABLED);
  EXPECT_EQ(change.action(), "enable it with `tokenbrokerctl grant enable robot-3`");
  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);

  auto bad_context = client_->NewContext();
  v1::WatchGrantsRequest bad;
  bad.set_app("Not An Id");
  auto refused = client_->admin().WatchGrants(bad_context.get(), bad);
  EXPECT_FALSE(refused->Read(&change));
  grpc::Status status = refused->Finish();
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("app"));
}

TEST_F(ApiPolicyTest, OverTheRateLimitTheCallerIsToldWhenToComeBack) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Token("robot").ok());
  grpc::ClientContext context;
  v1::GetAccessTokenRequest request;
  request.set_grant("robot");
  v1::GetAccessTokenResponse response;
  grpc::Status limited = client_->tokens().GetAccessToken(&context, request, &response);
  EXPECT_EQ(limited.error_code(), grpc::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(), HasSubstr("over the rate limit of rule \"svc-a-tokens\""));
  auto retry = context.GetServerTrailingMetadata().find("retry-after-ms");
  ASSERT_NE(retry, context.GetServerTrailingMetadata().end());
  EXPECT_GT(std::stoll(std::string(retry->second.data(), retry->second.size())), 100000);
}

TEST(ApiIdentityTest, WithoutAnIdentityEveryCallIsUnauthenticated) {
  testing::InProcessServer server(8, 10000, CallerPolicy(""));
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  v1::GetAccessTokenRequest request;
  request.set_grant("robot");
  absl::Status status = client->GetAccessToken(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(status.message()), HasSubstr("present a client certificate or an authorization: Bearer"));
  EXPECT_EQ(client->GetServerInfo().status().code(), absl::StatusCode::kUnauthenticated);
  ASSERT_TRUE(server.audit().Flush());
  std::vector<AuditEvent> events = *server.store().ListAuditEvents(AuditFilter{});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].result, "UNAUTHENTICATED");
  EXPECT_EQ(events[1].caller, "");
}

TEST(ApiMailTest, MailCallsWithoutADeadlineAreRefused) {
  testing::InProcessServer server;
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  grpc::ClientContext context;  // no deadline
  v1::ListFoldersRequest request;
  request.set_grant("robot");
  v1::ListFoldersResponse response;
  grpc::Status status = client->mail().ListFolders(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("deadline: MailService/ListFolders must carry a deadline"));
}

// GetMessage and FetchMessage on threads of their own
// (mail.get_message_threads, mail.fetch_message_threads: 8) and on the
// callback API with the stream workers (both 0): the same checks, codes,
// metrics and audit events.
class ApiOneMessageTest : public ::testing::TestWithParam<bool> {};

// This process's threads named `name` (as `top -H` shows them).
int ThreadsNamed(const std::string& name) { return testing::ThreadsNamed(getpid(), name); }

// Many calls at once (more than the threads): each ends NOT_FOUND (an
// unknown grant).
void ExpectManyAtOnceAllAnswered(const std::function<grpc::Status()>& call) {
  std::vector<std::thread> callers;
  std::atomic<int> not_found{0};
  for (int i = 0; i < 24; ++i) {
    callers.emplace_back([&] {
      if (call().error_code() == grpc::NOT_FOUND) ++not_found;
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(not_found.load(), 24);
}

// `method` (as "MailService/GetMessage") was counted and audited: `invalid`
// calls INVALID_ARGUMENT and `missing` NOT_FOUND, all for grant "nobody".
void ExpectCountedAndAudited(testing::InProcessServer& server, const std::string& method, int invalid, int missing) {
  const std::string text = prometheus::TextSerializer().Serialize(server.metrics().registry()->Collect());
  EXPECT_THAT(text, HasSubstr(absl::StrCat("tokenbroker_grpc_requests_total{code=\"INVALID_ARGUMENT\",method=\"",
                                           "tokenbroker.v1.", method, "\"} ", invalid)));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("tokenbroker_grpc_requests_total{code=\"NOT_FOUND\",method=\"",
                                           "tokenbroker.v1.", method, "\"} ", missing)));
  ASSERT_TRUE(server.audit().Flush());
  std::vector<AuditEvent> events = *server.store().ListAuditEvents(AuditFilter{});
  int audited_invalid = 0;
  int audited_missing = 0;
  for (const AuditEvent& e : events) {
    if (e.method != method) continue;
    EXPECT_EQ(e.grant, "nobody");
    EXPECT_EQ(e.caller, "test");
    audited_invalid += e.result == "INVALID_ARGUMENT";
    audited_missing += e.result == "NOT_FOUND";
  }
  EXPECT_EQ(audited_invalid, invalid);
  EXPECT_EQ(audited_missing, missing);
}

TEST_P(ApiOneMessageTest, GetMessageRequestsAreCheckedCountedAndAuditedOnEitherPath) {
  testing::InProcessServer server(8, 10000, testing::InProcessServer::AllowAll(), GetParam() ? 8u : 0u);
  // Eight threads of each method's own, or none.
  EXPECT_EQ(ThreadsNamed("get-message"), GetParam() ? 8 : 0);
  EXPECT_EQ(ThreadsNamed("fetch-message"), GetParam() ? 8 : 0);
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  auto get = [&](uint32_t uid, uint32_t max_size, bool deadline = true) {
    v1::GetMessageRequest request;
    request.set_grant("nobody");
    request.set_folder("INBOX");
    request.set_uid(uid);
    request.set_max_size(max_size);
    v1::GetMessageResponse response;
    grpc::ClientContext context;
    if (deadline) context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return client->mail().GetMessage(&context, request, &response);
  };
  grpc::Status no_deadline = get(1, 0, false);
  EXPECT_EQ(no_deadline.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(no_deadline.error_message(), HasSubstr("deadline: MailService/GetMessage must carry a deadline"));
  EXPECT_EQ(get(0, 0).error_message(), "uid: required");
  EXPECT_EQ(get(1, 4000001).error_message(), "max_size: at most 4000000 bytes");
  grpc::Status unknown = get(1, 0);
  EXPECT_EQ(unknown.error_code(), grpc::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("nobody"));
  ExpectManyAtOnceAllAnswered([&] { return get(1, 0); });
  ExpectCountedAndAudited(server, "MailService/GetMessage", 3, 25);
}

TEST_P(ApiOneMessageTest, FetchMessageRequestsAreCheckedCountedAndAuditedOnEitherPath) {
  testing::InProcessServer server(8, 10000, testing::InProcessServer::AllowAll(), GetParam() ? 8u : 0u);
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  // The call's status, and how many responses came before it.
  auto fetch = [&](uint32_t uid, uint32_t chunk_size, bool deadline = true) {
    v1::FetchMessageRequest request;
    request.set_grant("nobody");
    request.set_folder("INBOX");
    request.set_uid(uid);
    request.set_chunk_size(chunk_size);
    grpc::ClientContext context;
    if (deadline) context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = client->mail().FetchMessage(&context, request);
    v1::FetchMessageResponse response;
    int responses = 0;
    while (reader->Read(&response)) ++responses;
    grpc::Status status = reader->Finish();
    EXPECT_EQ(responses, 0) << "a failed fetch sent responses";
    return status;
  };
  grpc::Status no_deadline = fetch(1, 0, false);
  EXPECT_EQ(no_deadline.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(no_deadline.error_message(), HasSubstr("deadline: MailService/FetchMessage must carry a deadline"));
  EXPECT_EQ(fetch(0, 0).error_message(), "uid: required");
  EXPECT_EQ(fetch(1, 100).error_message(), "chunk_size: between 4096 and 4194304 bytes");
  grpc::Status unknown = fetch(1, 0);
  EXPECT_EQ(unknown.error_code(), grpc::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("nobody"));
  ExpectManyAtOnceAllAnswered([&] { return fetch(1, 0); });
  ExpectCountedAndAudited(server, "MailService/FetchMessage", 3, 25);
}

// By default GetMessage and FetchMessage each have 8 threads of their own.
TEST(ApiMailTest, ByDefaultGetMessageAndFetchMessageHaveEightThreadsEachOfTheirOwn) {
  testing::InProcessServer server;
  EXPECT_EQ(ThreadsNamed("get-message"), 8);
  EXPECT_EQ(ThreadsNamed("fetch-message"), 8);
}

INSTANTIATE_TEST_SUITE_P(BothPaths, ApiOneMessageTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "OwnThreads" : "CallbackApi";
                         });

TEST(ApiConsentTest, CallsThatWaitForTheProviderNeedADeadline) {
  testing::InProcessServer server;
  std::unique_ptr<BrokerClient> client = ClientOf(server);
  grpc::ClientContext context;  // no deadline
  v1::StartDeviceAuthorizationRequest request;
  request.mutable_grant()->set_id("alice");
  v1::StartDeviceAuthorizationResponse response;
  grpc::Status status = client->admin().StartDeviceAuthorization(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("deadline: AdminService/StartDeviceAuthorization must carry a deadline (a gRPC timeout): it "
                        "waits for the identity provider"));
}

}  // namespace
}  // namespace tokenbroker
