// Several replicas on one PostgreSQL, end to end: three real tokenbrokerd
// processes on one real PostgreSQL, against a Microsoft-shaped token endpoint
// over HTTPS that rotates refresh tokens and (where a test turns it on)
// revokes a user whose consumed refresh token is presented again.
#include <signal.h>

#include <grpcpp/grpcpp.h>

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/daemon.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"
#include "tests/support/postgres_server.h"
#include "tokenbroker/v1/admin_service.grpc.pb.h"
#include "tokenbroker/v1/token_service.grpc.pb.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClientSecret[] = "replicas-Client-S3cret~value";
constexpr int kReplicas = 3;

class ReplicasE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls_ = testing::MakeSelfSignedCertificate(dir_, "idp", 30, "rsa", "IP:127.0.0.1");
    ASSERT_TRUE(server_.Start(tls_.certificate, tls_.private_key).ok());
    authority_ = absl::StrCat("127.0.0.1:", server_.port());
    idp_.SetHost(authority_);
    idp_.RegisterApp(kTenant, "client-1", kClientSecret);
    database_ = *testing::SharedPostgresServer().CreateDatabase();
  }

  // The replicas' shared configuration: one keyring, one database, leases of
  // `lease_ttl`, background refreshes `min_slack` ahead of expiry checked
  // every second.
  void StartReplicas(const std::string& lease_ttl = "3s", const std::string& min_slack = "5m") {
    const std::string dsn_file = dir_.WriteFile("secrets/pg.dsn", testing::SharedPostgresServer().Dsn(database_));
    const std::string config = dir_.WriteFile(
        "broker.yaml",
        testing::DaemonConfig(dir_, "  create_if_missing: true\n", "5s",
                              absl::StrCat("store:\n  postgres:\n    dsn_file: \"", dsn_file,
                                           "\"\n    lease_ttl: ", lease_ttl, "\n    heartbeat_interval: 1s\n")) +
            absl::StrCat("http:\n  ca_file: \"", tls_.certificate, "\"\ntokens:\n  initial_backoff: 0s\n",
                         "  refresh_interval: 1s\n  min_slack: ", min_slack, "\n"));
    // One after the other: the first creates the keyring the others read.
    for (int i = 0; i < kReplicas; ++i) {
      replicas_[i] = testing::StartDaemon(config, dir_.path());
      ASSERT_FALSE(replicas_[i].grpc_address.empty());
      channels_[i] = grpc::CreateChannel(replicas_[i].grpc_address, grpc::InsecureChannelCredentials());
    }
    const std::string secret = dir_.WriteFile("client-secret", kClientSecret);
    MustCtl(0, {"app", "create", "contoso", "--provider", "microsoft", "--tenant", kTenant, "--client-id",
                "client-1", "--authority-host", authority_, "--client-secret-file", secret, "--not-after",
                "2099-01-01"});
  }

  void TearDown() override {
    for (auto& replica : replicas_) {
      if (replica.process == nullptr) continue;
      replica.Stop();
      const std::string log = replica.process->Stderr();
      EXPECT_THAT(log, Not(HasSubstr(kClientSecret)));
      EXPECT_THAT(log, Not(HasSubstr("0.rt-")));
    }
  }

  CommandResult MustCtl(int replica, const std::vector<std::string>& args) {
    CommandResult r = testing::Ctl(replicas_[replica].grpc_address, args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  }

  // Imports a delegated grant `id` for user `id` with a fresh refresh token.
  void ImportGrant(int replica, const std::string& id) {
    const std::string rt = absl::StrCat("0.rt-imported-", id);
    idp_.AddRefreshToken(rt, id);
    auto stub = v1::AdminService::NewStub(channels_[replica]);
    v1::ImportGrantRequest request;
    request.mutable_grant()->set_id(id);
    request.mutable_grant()->set_app("contoso");
    request.mutable_grant()->set_mailbox(id + "@contoso.com");
    request.set_refresh_token(rt);
    v1::Grant grant;
    grpc::ClientContext context;
    grpc::Status status = stub->ImportGrant(&context, request, &grant);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // GetAccessToken on `replica`.
  grpc::Status Token(int replica, const std::string& grant, v1::GetAccessTokenResponse* response,
                     absl::Duration min_valid = absl::Seconds(1)) {
    auto stub = v1::TokenService::NewStub(channels_[replica]);
    v1::GetAccessTokenRequest request;
    request.set_grant(grant);
    request.mutable_min_valid_for()->set_seconds(absl::ToInt64Seconds(min_valid));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    return stub->GetAccessToken(&context, request, response);
  }

  // Every replica's log lines about membership and heartbeats, to show why
  // a membership check failed.
  std::string MembershipLog() {
    std::string out;
    for (int r = 0; r < kReplicas; ++r) {
      for (absl::string_view line : absl::StrSplit(replicas_[r].process->Stderr(), '\n')) {
        if (absl::StrContains(line, "replicas") || absl::StrContains(line, "heartbeat")) {
          absl::StrAppend(&out, "replica ", r, ": ", line, "\n");
        }
      }
    }
    return out;
  }

  // A metric's value on `replica` (0 when absent).
  double Metric(int replica, const std::string& name) {
    std::string text = testing::HttpGet(replicas_[replica].metrics_address, "/metrics").value_or("");
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, name + " ")) return std::stod(std::string(line.substr(name.size() + 1)));
    }
    return 0;
  }

  testing::TempDir dir_;
  testing::CertificateFiles tls_;
  testing::FakeMicrosoft idp_{SystemClock::Get()};
  testing::HttpsServer server_{idp_, ""};
  std::string authority_;
  std::string database_;
  testing::RunningDaemon replicas_[kReplicas];
  std::shared_ptr<grpc::Channel> channels_[kReplicas];
};

TEST_F(ReplicasE2ETest, AThousandConcurrentCallsOverThreeReplicasMakeOneProviderRequest) {
  StartReplicas();
  ImportGrant(0, "alice");
  // The provider answers only when the test says: every call below arrives
  // while the one refresh is under way.
  idp_.Hold(true);
  constexpr int kCalls = 1000;
  struct Call {
    grpc::ClientContext context;
    v1::GetAccessTokenRequest request;
    v1::GetAccessTokenResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<std::unique_ptr<v1::TokenService::Stub>> stubs;
  for (int r = 0; r < kReplicas; ++r) stubs.push_back(v1::TokenService::NewStub(channels_[r]));
  absl::Mutex mu;
  int done = 0;
  // All at once, without a thread each: the callback API.
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* call = calls.back().get();
    call->request.set_grant("alice");
    call->request.mutable_min_valid_for()->set_seconds(300);
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stubs[i % kReplicas]->async()->GetAccessToken(&call->context, &call->request, &call->response,
                                                  [call, &mu, &done](grpc::Status status) {
                                                    absl::MutexLock lock(&mu);
                                                    call->status = std::move(status);
                                                    ++done;
                                                  });
  }
  ASSERT_TRUE(idp_.WaitForHeldRequests(1, absl::Seconds(30)));
  idp_.Hold(false);
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* d) { return *d == kCalls; }, &done));
  }
  int ok = 0;
  std::set<std::string> tokens;
  for (const auto& call : calls) {
    if (call->status.ok()) {
      ++ok;
      tokens.insert(call->response.access_token());
    } else {
      ADD_FAILURE() << call->status.error_message();
    }
  }
  EXPECT_EQ(ok, kCalls);
  EXPECT_EQ(tokens.size(), 1u) << "every replica served the one refreshed token";
  EXPECT_EQ(idp_.requests(), 1) << "one provider request for " << kCalls << " calls on " << kReplicas
                                << " replicas";
  double adopted = 0;
  for (int i = 0; i < kReplicas; ++i) adopted += Metric(i, "tokenbroker_shared_tokens_adopted_total");
  EXPECT_GE(adopted, 2) << "the replicas that did not refresh served the shared token";
  // Membership is what the last heartbeat (1 s) saw. A burst like this one
  // can hold a heartbeat back past the 3 s window for a moment; what must
  // hold is that the replicas see each other again within a few beats.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Metric(0, "tokenbroker_replicas_alive") != kReplicas && absl::Now() < deadline) {
  }
  EXPECT_EQ(Metric(0, "tokenbroker_replicas_alive"), kReplicas) << MembershipLog();
}

TEST_F(ReplicasE2ETest, RotatingRefreshTokensAreUsedOncePerLifetimeAndNeverReused) {
  // Tokens of 12 s refreshed 3-4.5 s ahead of expiry: three lifetimes in
  // about 40 s. A refresh token presented twice revokes its user.
  idp_.SetExpiresIn(12);
  idp_.SetReuseRevokes(true);
  StartReplicas("2s", "3s");
  constexpr int kGrants = 200;
  std::vector<std::string> grants;
  for (int g = 0; g < kGrants; ++g) {
    grants.push_back(absl::StrCat("user-", g));
    ImportGrant(g % kReplicas, grants.back());
  }
  // Every replica serves every grant, so that each has it in its cache.
  const absl::Time began = absl::Now();
  for (int r = 0; r < kReplicas; ++r) {
    for (const std::string& g : grants) {
      v1::GetAccessTokenResponse response;
      grpc::Status status = Token(r, g, &response);
      ASSERT_TRUE(status.ok()) << g << " on replica " << r << ": " << status.error_message();
    }
  }
  // Three lifetimes of background refreshes, with callers on every replica
  // all along: none may fail.
  const absl::Time end = began + absl::Seconds(3 * 12 + 2);
  int calls = 0;
  while (absl::Now() < end) {
    for (int r = 0; r < kReplicas && absl::Now() < end; ++r) {
      for (int g = calls % 10; g < kGrants; g += 10) {
        v1::GetAccessTokenResponse response;
        grpc::Status status = Token(r, grants[g], &response);
        ASSERT_TRUE(status.ok()) << grants[g] << " on replica " << r << ": " << status.error_message();
      }
      ++calls;
    }
  }
  EXPECT_EQ(idp_.reused_refresh_tokens(), 0) << "a replica presented a refresh token another had used";
  // One provider request per grant per token lifetime: consecutive refreshes
  // of a grant are a lifetime apart less the slack, never two in one
  // lifetime.
  int requests = 0;
  int doubled = 0;
  absl::Duration shortest = absl::InfiniteDuration();
  for (const std::string& g : grants) {
    std::vector<absl::Time> times = idp_.RefreshTimes(g);
    requests += static_cast<int>(times.size());
    for (size_t i = 1; i < times.size(); ++i) {
      shortest = std::min(shortest, times[i] - times[i - 1]);
      if (times[i] - times[i - 1] < absl::Seconds(6)) ++doubled;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - began);
  std::printf("[ replicas ] %d grants on %d replicas for %.0f s (%.1f lifetimes of a 12 s token): %d provider "
              "requests, %.2f per grant (one per token lifetime, each 7.5-9 s after the last, ahead of expiry); "
              "shortest gap between two refreshes of a grant %s; %d second refreshes inside one lifetime; %d "
              "refresh tokens presented twice\n",
              kGrants, kReplicas, seconds, seconds / 12.0, requests, static_cast<double>(requests) / kGrants,
              absl::FormatDuration(shortest).c_str(), doubled, idp_.reused_refresh_tokens());
  EXPECT_EQ(doubled, 0);
  EXPECT_GE(requests, kGrants * 3) << "each grant was refreshed in the background at least once per lifetime";
  // Every grant still active and served by every replica.
  for (int r = 0; r < kReplicas; ++r) {
    v1::GetAccessTokenResponse response;
    EXPECT_TRUE(Token(r, grants[r], &response).ok());
  }
  CommandResult list = MustCtl(1, {"--output", "json", "grant", "list"});
  EXPECT_THAT(list.out, Not(HasSubstr("NEEDS_RECONSENT")));
}

TEST_F(ReplicasE2ETest, AGrantDisabledThroughOneReplicaIsRefusedByAllWithinASecond) {
  StartReplicas();
  ImportGrant(0, "carol");
  for (int r = 0; r < kReplicas; ++r) {
    v1::GetAccessTokenResponse response;
    ASSERT_TRUE(Token(r, "carol", &response).ok());
  }
  EXPECT_EQ(idp_.requests(), 1);
  MustCtl(2, {"grant", "disable", "carol"});
  const absl::Time disabled = absl::Now();
  for (int r = 0; r < kReplicas; ++r) {
    grpc::Status status;
    absl::Time refused;
    do {
      v1::GetAccessTokenResponse response;
      status = Token(r, "carol", &response);
      refused = absl::Now();
    } while (status.ok() && refused - disabled < absl::Seconds(5));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "replica " << r;
    EXPECT_THAT(status.error_message(), HasSubstr("is disabled"));
    EXPECT_LT(refused - disabled, absl::Seconds(1)) << "replica " << r;
  }
  // Enabled again through another replica: served again everywhere.
  MustCtl(1, {"grant", "enable", "carol"});
  for (int r = 0; r < kReplicas; ++r) {
    v1::GetAccessTokenResponse response;
    grpc::Status status = Token(r, "carol", &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
}

TEST_F(ReplicasE2ETest, AfterADatabaseRestartTheReplicasHearChangesAgain) {
  StartReplicas();
  ImportGrant(0, "gina");
  for (int r = 0; r < kReplicas; ++r) {
    v1::GetAccessTokenResponse response;
    ASSERT_TRUE(Token(r, "gina", &response).ok());
  }
  // Every replica's change feed loses its connection; notifications sent
  // while it is away are gone for good.
  ASSERT_TRUE(testing::SharedPostgresServer().Restart().ok());
  MustCtl(0, {"grant", "disable", "gina"});
  // Each feed reconnects (1 s back-off), then drops every cached grant: the
  // change is seen although its notification was missed.
  for (int r = 1; r < kReplicas; ++r) {
    grpc::Status status;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    do {
      v1::GetAccessTokenResponse response;
      status = Token(r, "gina", &response);
    } while (status.ok() && absl::Now() < deadline);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "replica " << r;
    const absl::Time feed_deadline = absl::Now() + absl::Seconds(20);
    while (Metric(r, "tokenbroker_change_feed_connected") != 1 && absl::Now() < feed_deadline) {
    }
    EXPECT_EQ(Metric(r, "tokenbroker_change_feed_connected"), 1) << "replica " << r;
    EXPECT_GE(Metric(r, "tokenbroker_change_feed_disconnects_total"), 1) << "replica " << r;
  }
}

TEST_F(ReplicasE2ETest, AReplicaKilledWhileRefreshingLosesItsLeaseToTheOthers) {
  StartReplicas("3s");
  ImportGrant(0, "dave");
  // Replica 0 starts the refresh and is killed while the provider holds it.
  idp_.Hold(true);
  std::thread doomed([&] {
    v1::GetAccessTokenResponse response;
    (void)Token(0, "dave", &response);
  });
  ASSERT_TRUE(idp_.WaitForHeldRequests(1, absl::Seconds(30)));
  replicas_[0].process->Signal(SIGKILL);
  ASSERT_EQ(*replicas_[0].process->Wait(absl::Seconds(30)), 128 + SIGKILL);
  replicas_[0].process.reset();
  idp_.Hold(false);
  doomed.join();
  // Replica 1 waits out the dead replica's lease (3 s), takes it over and
  // refreshes with the newest stored refresh token.
  const absl::Time asked = absl::Now();
  v1::GetAccessTokenResponse response;
  grpc::Status status = Token(1, "dave", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - asked, absl::Seconds(3 + 2));
  EXPECT_EQ(idp_.UserOfAccessToken(response.access_token()), "dave");
  EXPECT_EQ(Metric(1, "tokenbroker_refresh_leases_total{outcome=\"took_over\"}"), 1);
  // And replica 2 serves what replica 1 refreshed.
  v1::GetAccessTokenResponse shared;
  ASSERT_TRUE(Token(2, "dave", &shared).ok());
  EXPECT_EQ(shared.access_token(), response.access_token());
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(ReplicasE2ETest, ConsentsBegunOnOneReplicaCompleteOnAnother) {
  StartReplicas();
  // Authorization code: begun on replica 0, the redirect completed on replica 1.
  CommandResult begin = MustCtl(0, {"consent", "begin", "erin", "--app", "contoso", "--mailbox", "erin@contoso.com",
                                    "--no-listen", "--redirect-uri", "https://broker.example.com/consent"});
  const size_t at = begin.out.find("https://" + authority_);
  ASSERT_NE(at, std::string::npos) << begin.out;
  const std::string url = begin.out.substr(at, begin.out.find('\n', at) - at);
  const std::string code = idp_.IssueAuthorizationCode(url, "erin");
  ASSERT_FALSE(code.empty()) << url;
  const std::string state = testing::ParseForm(url.substr(url.find('?') + 1))["state"];
  const std::string redirect = "https://broker.example.com/consent?code=" + code + "&state=" + state;
  CommandResult done = MustCtl(1, {"consent", "complete", "--url", redirect});
  EXPECT_THAT(done.out, HasSubstr("active"));
  CommandResult again = testing::Ctl(replicas_[2].grpc_address, {"consent", "complete", "--url", redirect});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("state: unknown or already used"));
  v1::GetAccessTokenResponse response;
  ASSERT_TRUE(Token(2, "erin", &response).ok());
  EXPECT_EQ(idp_.UserOfAccessToken(response.access_token()), "erin");

  // Device code: started on replica 2 without waiting, which then stops; the
  // others poll the provider (once per interval) and complete it.
  idp_.SetDeviceCodeTimes(1, 120);
  CommandResult device = MustCtl(2, {"consent", "device", "frank", "--app", "contoso", "--mailbox",
                                     "frank@contoso.com", "--no-wait"});
  EXPECT_EQ(replicas_[2].Stop(), 0);
  replicas_[2].process.reset();
  const int before = idp_.requests();
  idp_.ApproveDeviceCode(idp_.LatestUserCode(), "frank");
  std::string shown;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    shown = MustCtl(0, {"grant", "show", "frank"}).out;
  } while (!absl::StrContains(shown, "active") && absl::Now() < deadline);
  EXPECT_THAT(shown, HasSubstr("active"));
  EXPECT_LE(idp_.requests() - before, 2) << "polled once per interval, not once per replica";
  ASSERT_TRUE(Token(1, "frank", &response).ok());
  EXPECT_EQ(idp_.UserOfAccessToken(response.access_token()), "frank");
}

}  // namespace
}  // namespace tokenbroker
