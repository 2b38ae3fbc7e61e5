#include "service/config/config_loader.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/files.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

constexpr char kValid[] = R"(server:
  grpc_address: 127.0.0.1:0
  metrics_address: 127.0.0.1:0
  shutdown_grace_period: 1m30s
  plaintext: true
log:
  level: debug
store:
  sqlite:
    path: var/db
keys:
  keyring_file: var/keyring.yaml
)";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

absl::Status ParseError(const std::string& yaml) { return ParseConfig(yaml, "test.yaml").status(); }

TEST(ConfigTest, ParsesAValidFile) {
  absl::StatusOr<Config> config = ParseConfig(kValid, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server().grpc_address(), "127.0.0.1:0");
  EXPECT_EQ(ShutdownGracePeriod(*config), absl::Seconds(90));
  EXPECT_EQ(config->log().level(), config::v1::LogConfig::LEVEL_DEBUG);
  EXPECT_EQ(config->store().sqlite().path(), "var/db");
  EXPECT_FALSE(config->keys().create_if_missing());
}

TEST(ConfigTest, TheShippedLocalConfigIsValid) {
  const std::string path = testing::SourceDir() + "/deploy/config/local.yaml";
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server().grpc_address(), "127.0.0.1:50051");
  EXPECT_EQ(config->server().metrics_address(), "127.0.0.1:9464");
  EXPECT_TRUE(config->keys().create_if_missing());
}

TEST(ConfigTest, DefaultsApply) {
  absl::StatusOr<Config> config =
      ParseConfig(Replace(kValid, "  shutdown_grace_period: 1m30s\n", ""), "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(ShutdownGracePeriod(*config), absl::Seconds(15));
}

TEST(ConfigTest, UnknownKeyNamesFileLineKeyPathAndTheExpectedKeys) {
  absl::Status s = ParseError(Replace(kValid, "  grpc_address:", "  grpc_adress:"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "test.yaml:2:3: server.grpc_adress: unknown key; expected one of: grpc_address, metrics_address, "
            "shutdown_grace_period, plaintext, max_request_bytes, tls, health_address");
}

TEST(ConfigTest, UnknownTopLevelKey) {
  absl::Status s = ParseError(std::string(kValid) + "tokenz:\n  slack: 5m\n");
  EXPECT_THAT(s.message(), HasSubstr("test.yaml:13:1: tokenz: unknown key; expected one of: server, log, store, keys, "
                                     "apps, grants, declarations_check_interval, http, tokens"));
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_THAT(ParseError(Replace(kValid, "plaintext: true", "plaintext: yes please")).message(),
              HasSubstr("test.yaml:5:14: server.plaintext: expected true or false"));
  EXPECT_THAT(ParseError(Replace(kValid, "1m30s", "soon")).message(),
              HasSubstr("server.shutdown_grace_period: expected a non-negative duration such as \"30s\""));
  EXPECT_THAT(ParseError(Replace(kValid, "level: debug", "level: loud")).message(),
              HasSubstr("log.level: expected one of: debug, info, warn, error"));
  EXPECT_THAT(ParseError(Replace(kValid, "  grpc_address: 127.0.0.1:0", "  grpc_address: [a, b]")).message(),
              HasSubstr("server.grpc_address: expected a string"));
  EXPECT_THAT(ParseError(Replace(kValid, "  plaintext: true\n", "  plaintext: true\n  max_request_bytes: -1\n"))
                  .message(),
              HasSubstr("server.max_request_bytes: expected an integer from 0 to 4294967295"));
}

TEST(ConfigTest, TenantPacingIsCheckedAndReadAsGiven) {
  const std::string tokens = std::string(kValid) + "tokens:\n  tenant_requests_per_second: 12.5\n  tenant_max_wait: 3s\n";
  absl::StatusOr<Config> config = ParseConfig(tokens, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tokens().has_tenant_requests_per_second());
  EXPECT_EQ(config->tokens().tenant_requests_per_second(), 12.5);
  EXPECT_EQ(config->tokens().tenant_max_wait().seconds(), 3);
  // 0 is "no pacing", not "unset".
  config = ParseConfig(std::string(kValid) + "tokens:\n  tenant_requests_per_second: 0\n", "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->tokens().has_tenant_requests_per_second());
  EXPECT_FALSE(ParseConfig(kValid, "test.yaml")->tokens().has_tenant_requests_per_second());
  EXPECT_THAT(ParseError(std::string(kValid) + "tokens:\n  tenant_requests_per_second: -1\n").message(),
              HasSubstr("tokens.tenant_requests_per_second: between 0 (no pacing) and 100000"));
  EXPECT_THAT(ParseError(std::string(kValid) + "tokens:\n  tenant_max_wait: 1h\n").message(),
              HasSubstr("tokens.tenant_max_wait: between 0s and 5m"));
}

TEST(ConfigTest, OneMessageThreadsAreReadAndBounded) {
  for (const std::string key : {"get_message_threads", "fetch_message_threads"}) {
    SCOPED_TRACE(key);
    const std::string mail = std::string(kValid) + "mail:\n  " + key + ": ";
    absl::StatusOr<Config> config = ParseConfig(mail + "4\n", "test.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    const auto threads = [&](const Config& c) {
      return key == "get_message_threads" ? c.mail().get_message_threads() : c.mail().fetch_message_threads();
    };
    const auto has_threads = [&](const Config& c) {
      return key == "get_message_threads" ? c.mail().has_get_message_threads() : c.mail().has_fetch_message_threads();
    };
    EXPECT_EQ(threads(*config), 4u);
    // Unset (the broker's default, 8 threads) and 0 (on the stream workers) differ.
    EXPECT_FALSE(has_threads(*ParseConfig(kValid, "test.yaml")));
    absl::StatusOr<Config> workers = ParseConfig(mail + "0\n", "test.yaml");
    ASSERT_TRUE(workers.ok()) << workers.status();
    EXPECT_TRUE(has_threads(*workers));
    EXPECT_EQ(threads(*workers), 0u);
    EXPECT_THAT(ParseError(mail + "65\n").message(), HasSubstr("mail." + key + ": at most 64"));
  }
  // Whether they poll: unset (they do not), or as given, while either
  // method has threads (both have 8 by default).
  EXPECT_FALSE(ParseConfig(kValid, "test.yaml")->mail().has_get_message_threads_poll());
  for (const char* threads : {"", "  get_message_threads: 8\n", "  fetch_message_threads: 0\n",
                              "  get_message_threads: 0\n", "  get_message_threads: 0\n  fetch_message_threads: 2\n"}) {
    absl::StatusOr<Config> polling =
        ParseConfig(std::string(kValid) + "mail:\n" + threads + "  get_message_threads_poll: true\n", "test.yaml");
    ASSERT_TRUE(polling.ok()) << threads << polling.status();
    EXPECT_TRUE(polling->mail().has_get_message_threads_poll());
    EXPECT_TRUE(polling->mail().get_message_threads_poll());
  }
  for (const char* threads : {"  get_message_threads: 0\n  fetch_message_threads: 0\n",
                              "  fetch_message_threads: 0\n  get_message_threads: 0\n"}) {
    EXPECT_THAT(ParseError(std::string(kValid) + "mail:\n" + threads + "  get_message_threads_poll: true\n").message(),
                HasSubstr("mail.get_message_threads_poll: only with threads of their own, and GetMessage and "
                          "FetchMessage are both on the stream workers"))
        << threads;
  }
}

TEST(ConfigTest, TenantsWithARateOfTheirOwnAreCheckedAndReadAsGiven) {
  const std::string rates = std::string(kValid) +
                            "tokens:\n  tenant_rates:\n"
                            "  - provider: microsoft\n    tenant: contoso.onmicrosoft.com\n"
                            "    requests_per_second: 200\n"
                            "  - provider: google\n    tenant: example.com\n    requests_per_second: 0.5\n";
  absl::StatusOr<Config> config = ParseConfig(rates, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->tokens().tenant_rates_size(), 2);
  EXPECT_EQ(config->tokens().tenant_rates(0).tenant(), "contoso.onmicrosoft.com");
  EXPECT_EQ(config->tokens().tenant_rates(0).requests_per_second(), 200);
  EXPECT_EQ(config->tokens().tenant_rates(1).provider(), config::v1::DeclaredApp::PROVIDER_GOOGLE);
  EXPECT_EQ(config->tokens().tenant_rates(1).requests_per_second(), 0.5);
  auto with = [](const std::string& entries) {
    return std::string(ParseError(std::string(kValid) + "tokens:\n  tenant_rates:\n" + entries).message());
  };
  EXPECT_THAT(with("  - provider: azure\n    tenant: a\n    requests_per_second: 1\n"),
              HasSubstr("tokens.tenant_rates[0].provider: expected one of: microsoft, google, oidc"));
  EXPECT_THAT(with("  - provider: microsoft\n    requests_per_second: 1\n"),
              HasSubstr("tokens.tenant_rates[0].tenant: missing required key"));
  // No rate is not "no pacing": it must be said.
  EXPECT_THAT(with("  - provider: microsoft\n    tenant: a\n"),
              HasSubstr("tokens.tenant_rates[0].requests_per_second: missing required key"));
  EXPECT_THAT(with("  - provider: microsoft\n    tenant: a\n    requests_per_second: -2\n"),
              HasSubstr("tokens.tenant_rates[0].requests_per_second: between 0 (no pacing) and 100000"));
  EXPECT_THAT(with("  - provider: microsoft\n    tenant: a\n    requests_per_second: 1\n"
                   "  - provider: microsoft\n    tenant: a\n    requests_per_second: 2\n"),
              HasSubstr("tokens.tenant_rates[1]: tenant \"a\" of this provider is already listed"));
}

TEST(ConfigTest, MissingRequiredKeys) {
  EXPECT_THAT(ParseError(Replace(kValid, "  grpc_address: 127.0.0.1:0\n", "")).message(),
              HasSubstr("server.grpc_address: missing required key"));
  EXPECT_THAT(ParseError(Replace(kValid, "keys:\n  keyring_file: var/keyring.yaml\n", "")).message(),
              HasSubstr("test.yaml:1:1: keys: missing required key"));
  EXPECT_THAT(ParseError(Replace(kValid, "    path: var/db\n", "")).message(),
              HasSubstr("store.sqlite.path: missing required key"));
}

TEST(ConfigTest, DuplicateKeysAndTwoStoreBackends) {
  EXPECT_THAT(ParseError(Replace(kValid, "  plaintext: true\n", "  plaintext: true\n  plaintext: false\n")).message(),
              HasSubstr("server.plaintext: duplicate key"));
  EXPECT_THAT(ParseError(Replace(kValid, "    path: var/db\n", "    path: var/db\n  postgres:\n    dsn_file: f\n"))
                  .message(),
              HasSubstr("store.postgres: only one of sqlite, postgres may be set"));
  EXPECT_THAT(ParseError(Replace(kValid, "  sqlite:\n    path: var/db\n", "  {}\n")).message(),
              HasSubstr("store: expected one of: sqlite, postgres"));
}

TEST(ConfigTest, PlaintextOnlyOnLoopbackOrUnixSocket) {
  EXPECT_THAT(ParseError(Replace(kValid, "127.0.0.1:0\n  metrics", "0.0.0.0:50051\n  metrics")).message(),
              HasSubstr("server.grpc_address: plaintext gRPC is only allowed on loopback"));
  EXPECT_TRUE(ParseConfig(Replace(kValid, "127.0.0.1:0\n  metrics", "unix:/run/tb.sock\n  metrics"), "t").ok());
  EXPECT_TRUE(ParseConfig(Replace(kValid, "127.0.0.1:0\n  metrics", "'[::1]:50051'\n  metrics"), "t").ok());
  EXPECT_THAT(ParseError(Replace(kValid, "  plaintext: true\n", "")).message(),
              HasSubstr("server.tls: required (certificate_file, private_key_file); or, on loopback or a Unix socket "
                        "only, plaintext: true"));
}

TEST(ConfigTest, TlsOnAnyAddressButNotTogetherWithPlaintext) {
  const std::string tls = "  tls:\n    certificate_file: /etc/tb/tls.crt\n    private_key_file: /etc/tb/tls.key\n";
  EXPECT_TRUE(ParseConfig(Replace(Replace(kValid, "127.0.0.1:0\n  metrics", "0.0.0.0:50051\n  metrics"),
                                  "  plaintext: true\n", tls),
                          "t")
                  .ok());
  EXPECT_THAT(ParseError(Replace(kValid, "  plaintext: true\n", "  plaintext: true\n" + tls)).message(),
              HasSubstr("server: set either tls or plaintext: true, not both"));
  EXPECT_THAT(ParseError(Replace(kValid, "  plaintext: true\n", "  tls:\n    certificate_file: /x\n")).message(),
              HasSubstr("server.tls.private_key_file"));
}

TEST(ConfigTest, BadAddresses) {
  EXPECT_THAT(ParseError(Replace(kValid, "127.0.0.1:0\n  metrics", "localhost\n  metrics")).message(),
              HasSubstr("server.grpc_address: \"localhost\" is not an address; expected host:port"));
  EXPECT_THAT(ParseError(Replace(kValid, "metrics_address: 127.0.0.1:0", "metrics_address: 127.0.0.1:99999")).message(),
              HasSubstr("server.metrics_address"));
}

TEST(ConfigTest, EmptyAndInvalidYaml) {
  EXPECT_THAT(ParseError("").message(), HasSubstr("test.yaml: the file is empty"));
  EXPECT_THAT(ParseError("server: [\n").message(), HasSubstr("test.yaml:"));
  EXPECT_THAT(ParseError("server: [\n").message(), HasSubstr("not valid YAML"));
  EXPECT_THAT(ParseError("- a\n- b\n").message(), HasSubstr("expected a mapping of keys to values"));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<Config> config = LoadConfigFile("/nonexistent/tokenbroker.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/tokenbroker.yaml"));
}

TEST(LoopbackTest, Addresses) {
  EXPECT_TRUE(IsLoopbackOrUnixAddress("127.0.0.1:1"));
  EXPECT_TRUE(IsLoopbackOrUnixAddress("127.1.2.3:1"));
  EXPECT_TRUE(IsLoopbackOrUnixAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackOrUnixAddress("[::1]:1"));
  EXPECT_TRUE(IsLoopbackOrUnixAddress("unix:/x"));
  EXPECT_FALSE(IsLoopbackOrUnixAddress("[::]:1"));
  EXPECT_FALSE(IsLoopbackOrUnixAddress("0.0.0.0:1"));
  EXPECT_FALSE(IsLoopbackOrUnixAddress("10.0.0.1:1"));
  EXPECT_FALSE(IsLoopbackOrUnixAddress("127.0.0.1.evil.com:1"));
}

}  // namespace
}  // namespace tokenbroker
