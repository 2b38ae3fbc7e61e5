// End to end: the real tokenbrokerd and tokenbrokerctl binaries, on free
// ports, in a temporary directory whose path has a space in it.
#include "tests/support/daemon.h"

#include <grpcpp/generic/generic_stub.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/broker_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using testing::RunCommand;
using testing::Subprocess;
using testing::TempDir;

std::string Daemon() { return testing::DaemonPath(); }
std::string Ctl() { return testing::CtlPath(); }
using testing::RunningDaemon;
using testing::StartDaemon;

std::string ConfigYaml(const TempDir& dir, const std::string& extra_keys = "  create_if_missing: true\n",
                       const std::string& grace = "5s") {
  return testing::DaemonConfig(dir, extra_keys, grace);
}

TEST(DaemonTest, ServesHealthVersionMetricsAndStopsCleanlyOnSigterm) {
  TempDir dir;
  const std::string config = dir.WriteFile("config/broker.yaml", ConfigYaml(dir));
  RunningDaemon d = StartDaemon(config, dir.path());
  ASSERT_FALSE(d.grpc_address.empty());
  ASSERT_FALSE(d.metrics_address.empty());

  testing::CommandResult health = RunCommand({Ctl(), "--target", d.grpc_address, "health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
  testing::CommandResult json_health = RunCommand({Ctl(), "--target", d.grpc_address, "--output", "json", "health"});
  EXPECT_EQ(json_health.out, "{\"status\": \"SERVING\"}\n");

  testing::CommandResult version = RunCommand({Ctl(), "--target", d.grpc_address, "--output", "json", "version"});
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_THAT(version.out, HasSubstr("\"client\": {\"version\": \"0.1.0\""));
  EXPECT_THAT(version.out, HasSubstr("\"server\": {\"version\":\"0.1.0\""));
  EXPECT_THAT(version.out, HasSubstr("\"store\":\"sqlite\""));

  absl::StatusOr<std::string> metrics = testing::HttpGet(d.metrics_address, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("tokenbroker_build_info{"));
  EXPECT_THAT(*metrics, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(*metrics, HasSubstr("process_open_fds "));
  EXPECT_THAT(*metrics, HasSubstr(
                            "tokenbroker_grpc_requests_total{code=\"OK\",method=\"grpc.health.v1.Health/Check\"} 2"));
  EXPECT_THAT(*metrics, HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"tokenbroker.v1.AdminService/"
                                  "GetServerInfo\"} 1"));
  EXPECT_THAT(*metrics, HasSubstr("tokenbroker_grpc_request_duration_seconds_bucket{"));

  // The database and keyring were created where the config said, privately.
  struct stat st;
  ASSERT_EQ(stat(dir.File("var/keyring.yaml").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(dir.File("var/tokenbroker.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);

  d.process->Signal(SIGTERM);
  absl::StatusOr<int> code = d.process->Wait(absl::Seconds(5 + 10));
  ASSERT_TRUE(code.ok()) << "still running after the grace period";
  EXPECT_EQ(*code, 0) << d.process->Stderr();
  const std::string log = d.process->Stderr();
  for (const char* step : {"open-keyring", "open-store", "start-metrics", "build-providers", "build-services", "start-grpc"}) {
    EXPECT_THAT(log, HasSubstr(absl::StrCat("\"msg\":\"start-up step done\",\"step\":\"", step, "\"")));
  }
  EXPECT_THAT(log, HasSubstr("\"step\":\"drain-grpc\""));
  EXPECT_THAT(log, HasSubstr("\"msg\":\"stopped\""));
  // Every line of the log is one JSON object.
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_THAT(line, ::testing::MatchesRegex("\\{\"time\":\"[-0-9T:.]+Z\",\"level\":\"[a-z]+\",\"msg\":.*\\}"));
  }
}

// Watches the health service at `address` (SERVING), sends the daemon SIGTERM,
// sees NOT_SERVING, and expects exit code 0 within its 2 s grace period (and
// some slack).
void ExpectSigtermTurnsHealthNotServing(RunningDaemon& d, const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto reader = stub->Watch(&context, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse update;
  ASSERT_TRUE(reader->Read(&update));
  EXPECT_EQ(update.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  d.process->Signal(SIGTERM);
  ASSERT_TRUE(reader->Read(&update));
  EXPECT_EQ(update.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  while (reader->Read(&update)) {
  }
  (void)reader->Finish();
  absl::StatusOr<int> code = d.process->Wait(absl::Seconds(2 + 10));
  ASSERT_TRUE(code.ok()) << "did not exit after the grace period";
  EXPECT_EQ(*code, 0) << d.process->Stderr();
}

TEST(DaemonTest, HealthTurnsNotServingWhileDrainingAndInFlightCallsEnd) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir, "  create_if_missing: true\n", "2s"));
  RunningDaemon d = StartDaemon(config, dir.path());
  ASSERT_FALSE(d.grpc_address.empty());

  // A Watch stream is an in-flight call that lasts until the server ends it.
  ExpectSigtermTurnsHealthNotServing(d, d.grpc_address);
}

// server.health_address: the plaintext listener for Kubernetes' gRPC probes
// serves the health service with the main listener's status, and nothing else.
TEST(DaemonTest, HealthListenerServesOnlyHealthWithTheMainStatus) {
  TempDir dir;
  std::string yaml = ConfigYaml(dir, "  create_if_missing: true\n", "2s");
  yaml.replace(yaml.find("server:\n") + 8, 0, "  health_address: 127.0.0.1:0\n");
  const std::string config = dir.WriteFile("broker.yaml", yaml);
  RunningDaemon d = StartDaemon(config, dir.path());
  ASSERT_FALSE(d.health_address.empty()) << d.process->Stderr();
  ASSERT_NE(d.health_address, d.grpc_address);
  EXPECT_THAT(d.process->Stderr(), HasSubstr("\"step\":\"start-health-listener\""));

  testing::CommandResult health = RunCommand({Ctl(), "--target", d.health_address, "health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
  // The broker's own services are not there, even for the local caller.
  testing::CommandResult version = RunCommand({Ctl(), "--target", d.health_address, "version"});
  EXPECT_NE(version.exit_code, 0);
  EXPECT_THAT(version.err, HasSubstr("UNIMPLEMENTED"));
  testing::CommandResult token = RunCommand({Ctl(), "--target", d.health_address, "token", "get", "any-grant"});
  EXPECT_NE(token.exit_code, 0);
  EXPECT_THAT(token.err, HasSubstr("UNIMPLEMENTED"));

  // SIGTERM turns it NOT_SERVING while the main listener drains.
  ExpectSigtermTurnsHealthNotServing(d, d.health_address);
}

TEST(DaemonTest, AHealthAddressEqualToTheGrpcAddressIsAConfigurationError) {
  TempDir dir;
  std::string yaml = ConfigYaml(dir);
  yaml.replace(yaml.find("grpc_address: 127.0.0.1:0"), 25, "grpc_address: 127.0.0.1:50999");
  yaml.replace(yaml.find("server:\n") + 8, 0, "  health_address: 127.0.0.1:50999\n");
  const std::string same = dir.WriteFile("same.yaml", yaml);
  testing::CommandResult r = RunCommand({Daemon(), "--config", same, "--check-config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("server.health_address: must differ from server.grpc_address"));
  std::string bad = ConfigYaml(dir);
  bad.replace(bad.find("server:\n") + 8, 0, "  health_address: nowhere\n");
  testing::CommandResult r2 = RunCommand({Daemon(), "--config", dir.WriteFile("bad.yaml", bad), "--check-config"});
  EXPECT_EQ(r2.exit_code, 2);
  EXPECT_THAT(r2.err, HasSubstr("server.health_address: \"nowhere\" is not an address"));
}

// Lists services through server reflection with a raw bidi call, as grpcurl
// does: ServerReflectionRequest{list_services: ""} is the bytes 3a 00.
std::string ReflectionListServices(const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto call = stub.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto step = [&cq](void* tag) {
    void* got = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&got, &ok));
    EXPECT_EQ(got, tag);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  EXPECT_TRUE(step(reinterpret_cast<void*>(1)));
  const char request_bytes[] = {0x3a, 0x00};
  grpc::Slice slice(request_bytes, sizeof request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  EXPECT_TRUE(step(reinterpret_cast<void*>(2)));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  std::string out;
  if (step(reinterpret_cast<void*>(3))) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  call->WritesDone(reinterpret_cast<void*>(4));
  step(reinterpret_cast<void*>(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(reinterpret_cast<void*>(5));
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

// GetMessage runs on threads of its own, whose calls give gRPC's callback
// threads no event; those slept 100 ms after each second without one, and
// then nothing read the network: every 1.1 s a request sat unread for up to
// 100 ms (3 such calls in this test before CallbackThreadsAwake). A fresh
// broker, whose callback threads started together, answers calls made back
// to back for over three such cycles promptly. The calls are turned down (no
// such grant) on the GetMessage threads without reaching IMAP. Timed against
// the wall clock because gRPC's sleeps are; one stray slow call (the machine
// busy elsewhere) is allowed.
TEST(DaemonTest, CallsOnThreadsOfTheirOwnAreReadWhileTheCallbackThreadsSleep) {
  TempDir dir;
  const std::string config = dir.WriteFile("config/broker.yaml", ConfigYaml(dir));
  RunningDaemon d = StartDaemon(config, dir.path());
  ClientOptions options;
  options.target = d.grpc_address;
  absl::StatusOr<std::unique_ptr<BrokerClient>> client = BrokerClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  v1::GetMessageRequest request;
  request.set_grant("no-such-grant");
  request.set_folder("INBOX");
  request.set_uid(1);
  int calls = 0;
  int slow = 0;
  absl::Duration longest;
  for (const absl::Time end = absl::Now() + absl::Milliseconds(3500); absl::Now() < end; ++calls) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetMessageResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = (*client)->mail().GetMessage(&context, request, &response);
    const absl::Duration took = absl::Now() - start;
    ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
    longest = std::max(longest, took);
    if (took >= absl::Milliseconds(80)) ++slow;
  }
  EXPECT_LE(slow, 1) << calls << " calls, the longest took " << longest;
  EXPECT_EQ(d.Stop(), 0);
}

TEST(DaemonTest, ServerReflectionListsTheServices) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir));
  RunningDaemon d = StartDaemon(config, dir.path());
  ASSERT_FALSE(d.grpc_address.empty());
  const std::string services = ReflectionListServices(d.grpc_address);
  for (const char* service : {"tokenbroker.v1.TokenService", "tokenbroker.v1.MailService",
                              "tokenbroker.v1.AdminService", "grpc.health.v1.Health"}) {
    EXPECT_THAT(services, HasSubstr(service));
  }
  d.process->Signal(SIGTERM);
  EXPECT_EQ(*d.process->Wait(absl::Seconds(20)), 0);
}

TEST(DaemonTest, RestartKeepsTheKeyringAndDatabase) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir));
  std::string first_key;
  for (int run = 0; run < 2; ++run) {
    RunningDaemon d = StartDaemon(config, dir.path());
    ASSERT_FALSE(d.grpc_address.empty());
    testing::CommandResult version = RunCommand({Ctl(), "--target", d.grpc_address, "--output", "json", "version"});
    const std::string key = testing::JsonField(version.out.substr(version.out.find("\"server\"")), "active_key_id");
    EXPECT_FALSE(key.empty()) << version.out;
    if (run == 0) {
      first_key = key;
      EXPECT_THAT(d.process->Stderr(), HasSubstr("created a new keyring"));
    } else {
      EXPECT_EQ(key, first_key);
      EXPECT_THAT(d.process->Stderr(), ::testing::Not(HasSubstr("created a new keyring")));
    }
    d.process->Signal(SIGTERM);
    EXPECT_EQ(*d.process->Wait(absl::Seconds(20)), 0);
  }
}

TEST(DaemonTest, ABrokenConfigExitsTwoNamingTheKey) {
  TempDir dir;
  std::string yaml = ConfigYaml(dir);
  yaml.replace(yaml.find("grpc_address"), 12, "grpc_adress");
  const std::string config = dir.WriteFile("broken.yaml", yaml);
  for (bool check_only : {true, false}) {
    std::vector<std::string> argv = {Daemon(), "--config", config};
    if (check_only) argv.push_back("--check-config");
    testing::CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr(config + ":2:3: server.grpc_adress: unknown key; expected one of: grpc_address"));
  }
}

TEST(DaemonTest, CheckConfigAcceptsAGoodFileAndTheShippedLocalConfig) {
  TempDir dir;
  const std::string config = dir.WriteFile("good.yaml", ConfigYaml(dir));
  testing::CommandResult r = RunCommand({Daemon(), "--check-config", "--config", config});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, config + ": configuration OK\n");
  const std::string local = testing::SourceDir() + "/deploy/config/local.yaml";
  EXPECT_EQ(RunCommand({Daemon(), "--config", local, "--check-config"}).exit_code, 0);
  // --check-config creates nothing.
  struct stat st;
  EXPECT_NE(stat(dir.File("var").c_str(), &st), 0);
}

TEST(DaemonTest, CommandLineErrorsExitTwo) {
  testing::CommandResult r = RunCommand({Daemon()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--config FILE is required"));
  r = RunCommand({Daemon(), "--confg", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown argument \"--confg\""));
  r = RunCommand({Daemon(), "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, ::testing::StartsWith("tokenbrokerd 0.1.0"));
  r = RunCommand({Daemon(), "--config", "/nonexistent/broker.yaml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/broker.yaml"));
}

TEST(DaemonTest, WithoutCreateIfMissingAMissingKeyringStopsStartUp) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir, ""));
  testing::CommandResult r = RunCommand({Daemon(), "--config", config});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("start-up step open-keyring failed: keyring file " + dir.File("var/keyring.yaml") +
                               " does not exist"));
  struct stat st;
  EXPECT_NE(stat(dir.File("var/tokenbroker.db").c_str(), &st), 0) << "no later step may have run";
}

TEST(DaemonTest, AWorldReadableKeyringStopsStartUp) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir, ""));
  dir.WriteFile("var/keyring.yaml",
                "active: k1\nkeys:\n  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0644);
  testing::CommandResult r = RunCommand({Daemon(), "--config", config});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("chmod 600"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")));
}

TEST(DaemonTest, ASecondBrokerOnTheSameSqliteFileRefusesToStart) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir));
  RunningDaemon first = StartDaemon(config, dir.path());
  ASSERT_FALSE(first.grpc_address.empty());
  testing::CommandResult second = RunCommand({Daemon(), "--config", config}, absl::Seconds(30));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr(absl::StrCat("start-up step open-store failed: store.sqlite.path: ",
                                                 dir.File("var/tokenbroker.db.lock"),
                                                 " is locked by another process (pid ", first.process->pid(), ")")));
  EXPECT_THAT(second.err, HasSubstr("SQLite allows one broker per file (use PostgreSQL for several replicas)"));
  // The first goes on serving; once it has stopped, the file is free again.
  EXPECT_EQ(testing::Ctl(first.grpc_address, {"health"}).out, "SERVING\n");
  EXPECT_EQ(first.Stop(), 0);
  RunningDaemon third = StartDaemon(config, dir.path());
  ASSERT_FALSE(third.grpc_address.empty());
  EXPECT_EQ(third.Stop(), 0);
}

TEST(DaemonTest, APortInUseStopsStartUpWithAClearMessage) {
  TempDir dir;
  const std::string config = dir.WriteFile("broker.yaml", ConfigYaml(dir));
  RunningDaemon first = StartDaemon(config, dir.path());
  ASSERT_FALSE(first.grpc_address.empty());
  // Its own database (one broker per SQLite file), the first one's port.
  TempDir other;
  std::string yaml = ConfigYaml(other);
  yaml.replace(yaml.find("127.0.0.1:0"), 11, first.grpc_address);
  testing::CommandResult r = RunCommand({Daemon(), "--config", other.WriteFile("second.yaml", yaml)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("start-up step start-grpc failed: cannot listen for gRPC on " + first.grpc_address));
  first.process->Signal(SIGTERM);
  EXPECT_EQ(*first.process->Wait(absl::Seconds(20)), 0);
}

}  // namespace
}  // namespace tokenbroker
