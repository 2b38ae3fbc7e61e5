#include <sstream>

#include "client/ctl/command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/in_process_server.h"
#include "tests/support/test_support.h"

namespace tokenbroker::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCli(const std::vector<std::string>& args, const char* env_target = nullptr) {
  std::ostringstream out, err;
  int code = RunCtl(args, out, err, [env_target](const char* name) -> const char* {
    return std::string(name) == "TOKENBROKER_TARGET" ? env_target : nullptr;
  });
  return {code, out.str(), err.str()};
}

class CtlTest : public ::testing::Test {
 protected:
  testing::InProcessServer server_;
};

TEST_F(CtlTest, HealthPrintsServing) {
  Result r = RunCli({"--target", server_.address(), "health"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = RunCli({"--output", "json", "health"}, server_.address().c_str());
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "{\"status\": \"SERVING\"}\n");
}

TEST_F(CtlTest, HealthExitsOneWhenNotServing) {
  server_.server().GetHealthCheckService()->SetServingStatus(false);
  Result r = RunCli({"--target", server_.address(), "health"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "NOT_SERVING\n");
}

TEST_F(CtlTest, VersionAsJsonHasClientAndServer) {
  Result r = RunCli({"--target=" + server_.address(), "--output=json", "version"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("{\"client\": {\"version\": \"0.1.0\""));
  EXPECT_THAT(r.out, HasSubstr("\"server\": {\"version\":\"9.9.9\",\"revision\":\"test\""));
  EXPECT_THAT(r.out, HasSubstr("\"active_key_id\":\"k1\""));
}

TEST_F(CtlTest, ServerErrorsPrintTheCodeAndMessageAndExitOne) {
  Result r = RunCli({"--target", server_.address(), "token", "get", "g1", "--min-valid", "10m"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenbrokerctl: NOT_FOUND: grant \"g1\" does not exist\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(CtlTest, UnreachableBrokerIsUnavailable) {
  Result r = RunCli({"--target", "127.0.0.1:1", "--timeout", "3s", "health"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, StartsWith("tokenbrokerctl: UNAVAILABLE: "));
}

TEST(CtlUsageTest, HelpAtEveryLevelExitsZero) {
  Result r = RunCli({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* group : {"health", "version", "app", "grant", "consent", "token", "mail", "keys", "audit"}) {
    EXPECT_THAT(r.out, HasSubstr(std::string("\n  ") + group + " ")) << group;
  }
  r = RunCli({"token", "--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("Verbs:\n  get "));
  r = RunCli({"token", "get", "--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("Usage: tokenbrokerctl [global flags] token get GRANT [--min-valid DURATION] [--sasl]"));
  EXPECT_THAT(r.out, HasSubstr("--min-valid DURATION"));
  r = RunCli({"audit", "list", "-h"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("--result CODE"));
}

TEST(CtlUsageTest, WrongCommandLinesExitTwoAndSayWhatToDo) {
  Result r = RunCli({"tokens"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_EQ(r.err, "tokenbrokerctl: unknown command \"tokens\"\nRun 'tokenbrokerctl --help' for usage.\n");
  r = RunCli({"token", "fetch"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("unknown verb \"fetch\" for token"));
  r = RunCli({"token", "get"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("token get: expected exactly one GRANT"));
  r = RunCli({"token", "get", "g1", "--min-valid", "soon"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--min-valid: expected a duration such as 10s or 5m, not \"soon\""));
  r = RunCli({"--outptu", "json", "health"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("unknown flag --outptu"));
  r = RunCli({"--output", "yaml", "health"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--output: expected text or json"));
  r = RunCli({"token"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("Verbs:"));
  r = RunCli({});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("Commands:"));
}

TEST_F(CtlTest, AppCreateShowAndListNeverPrintTheSecret) {
  testing::TempDir dir;
  const std::string secret = dir.WriteFile("secret", "ctl-client-SECRET-99\n");
  Result r = RunCli({"--target", server_.address(), "app", "create", "contoso", "--provider", "microsoft", "--tenant",
                     "contoso.onmicrosoft.com", "--client-id", "c-1", "--client-secret-file", secret, "--not-after",
                     "2099-01-01", "--label", "team=mail"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("app contoso (microsoft, from api)"));
  EXPECT_THAT(r.out, HasSubstr("1. secret-1             client_secret        expires 2099-01-01T00:00:00Z"));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"app", "show", "contoso"}, {"--output", "json", "app", "show", "contoso"},
        {"app", "list"}, {"--output", "json", "app", "list"}}) {
    std::vector<std::string> full = {"--target", server_.address()};
    full.insert(full.end(), args.begin(), args.end());
    Result shown = RunCli(full);
    EXPECT_EQ(shown.code, kExitOk) << shown.err;
    EXPECT_THAT(shown.out, HasSubstr("contoso"));
    EXPECT_THAT(shown.out, ::testing::Not(HasSubstr("ctl-client-SECRET-99")));
  }
  r = RunCli({"--target", server_.address(), "app", "create", "contoso", "--provider", "microsoft", "--tenant", "t",
              "--client-id", "c", "--client-secret-file", secret, "--not-after", "2099-01-01"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenbrokerctl: ALREADY_EXISTS: app \"contoso\" already exists\n");
}

TEST_F(CtlTest, GrantVerbs) {
  testing::TempDir dir;
  const std::string secret = dir.WriteFile("secret", "s");
  ASSERT_EQ(RunCli({"--target", server_.address(), "app", "create", "a", "--provider", "microsoft", "--tenant", "t",
                    "--client-id", "c", "--client-secret-file", secret, "--not-after", "2099-01-01"})
                .code,
            kExitOk);
  Result r = RunCli({"--target", server_.address(), "grant", "import", "alice", "--app", "a", "--mailbox",
                     "alice@contoso.com", "--refresh-token-file", dir.WriteFile("rt", "rt-value")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("grant alice (delegated, from api)"));
  EXPECT_EQ(RunCli({"--target", server_.address(), "grant", "disable", "alice"}).code, kExitOk);
  r = RunCli({"--target", server_.address(), "grant", "list", "--state", "disabled"});
  EXPECT_THAT(r.out, HasSubstr("alice                    a                    alice@contoso.com"));
  r = RunCli({"--target", server_.address(), "grant", "show", "nobody"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenbrokerctl: NOT_FOUND: grant \"nobody\" does not exist\n");
}

TEST(CtlUsageTest, CredentialFlagsAreCheckedBeforeAnythingIsSent) {
  testing::TempDir dir;
  const std::string secret = dir.WriteFile("secret", "s");
  Result r = RunCli({"app", "create", "a", "--provider", "microsoft", "--client-id", "c"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("give exactly one credential"));
  r = RunCli({"app", "create", "a", "--provider", "microsoft", "--client-id", "c", "--client-secret-file", secret});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--not-after: required with a client secret"));
  r = RunCli({"app", "create", "a", "--provider", "microsoft", "--client-id", "c", "--client-secret-file", secret,
              "--not-after", "next year"});
  EXPECT_THAT(r.err, HasSubstr("--not-after: expected a date such as 2027-11-27"));
  r = RunCli({"app", "create", "a", "--provider", "aws", "--client-id", "c", "--client-secret-file", secret});
  EXPECT_THAT(r.err, HasSubstr("--provider: expected microsoft, google or oidc"));
  r = RunCli({"app", "create", "a", "--provider", "microsoft", "--client-id", "c", "--client-secret-file",
              dir.WriteFile("empty", "")});
  EXPECT_THAT(r.err, HasSubstr("is empty"));
  r = RunCli({"grant", "import", "g", "--app", "a", "--mailbox", "m@x"});
  EXPECT_THAT(r.err, HasSubstr("--refresh-token-file: required"));
}

TEST(CtlUsageTest, ATokenFileThatCannotBeReadIsReported) {
  Result r = RunCli({"--token-file", "/nonexistent/token", "health"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT: cannot read token file /nonexistent/token"));
}

}  // namespace
}  // namespace tokenbroker::ctl
