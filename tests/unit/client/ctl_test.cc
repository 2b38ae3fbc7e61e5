#include <algorithm>
#include <sstream>

#include "client/ctl/command.h"
#include "client/ctl/command_util.h"
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
  // More grants than one page of the broker's: the list has them all.
  server_.AddBulkGrants("a", 1200);
  r = RunCli({"--target", server_.address(), "grant", "list"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1 + 1201) << "the header and every grant";
  EXPECT_THAT(r.out, HasSubstr("bulk-11199 "));
  r = RunCli({"--target", server_.address(), "grant", "show", "nobody"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenbrokerctl: NOT_FOUND: grant \"nobody\" does not exist\n");
}

TEST_F(CtlTest, AuditListIsATableAndFollowsPages) {
  std::vector<AuditEvent> events;
  for (int i = 0; i < 1500; ++i) {
    AuditEvent e;
    e.time = absl::FromUnixSeconds(1'800'000'000 + i);
    e.caller = "svc-mail";
    e.action = "token.get";
    e.method = "/tokenbroker.v1.TokenService/GetAccessToken";
    e.grant = absl::StrCat("grant-", i);
    e.result = "OK";
    e.detail = "Grüße";
    events.push_back(e);
  }
  ASSERT_TRUE(server_.store().AppendAuditEvents(events).ok());
  // More than one page of the broker's (1000): followed up to --limit.
  Result r = RunCli({"--target", server_.address(), "--output", "json", "audit", "list", "--limit", "1200"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '{') - 1, 1200) << "events in the JSON";
  EXPECT_THAT(r.out, HasSubstr("\"grant\": \"grant-1499\""));  // newest first
  EXPECT_THAT(r.out, HasSubstr("\"grant\": \"grant-300\""));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("\"grant\": \"grant-299\"")));
  EXPECT_THAT(r.out, HasSubstr("\"next_page_token\""));
  // A table, and how to go on.
  r = RunCli({"--target", server_.address(), "audit", "list", "--limit", "2"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("TIME                 CALLER               ACTION       METHOD"));
  EXPECT_THAT(r.out, HasSubstr("2027-01-15T08:24:59Z svc-mail             token.get    TokenService/GetAccessToken"));
  EXPECT_THAT(r.out, HasSubstr("grant-1499           OK                   Grüße\n"));
  ASSERT_THAT(r.err, StartsWith("more events: add --page-token "));
  std::string token = r.err.substr(std::string("more events: add --page-token ").size());
  token.pop_back();  // the newline
  r = RunCli({"--target", server_.address(), "audit", "list", "--limit", "1", "--page-token", token});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("grant-1497 "));
}

TEST(CtlTextTest, ColumnsCountCharactersAndNamesShowTheirSpaces) {
  EXPECT_EQ(FitColumn("Jürgen Groß", 8), "Jürgen G");
  EXPECT_EQ(FitColumn("Zoë", 5), "Zoë  ");
  EXPECT_EQ(FitColumn("a\tb", 4), "a?b ");
  EXPECT_EQ(DisplayName("INBOX"), "INBOX");
  EXPECT_EQ(DisplayName("Quote \"me\""), "Quote \"me\"");
  EXPECT_EQ(DisplayName(" Archive "), "\" Archive \"");
  EXPECT_EQ(DisplayName("\"quoted\""), "\"\\\"quoted\\\"\"");
  EXPECT_EQ(UidRanges({3, 7, 8, 9, 12}), "3,7:9,12");
  EXPECT_EQ(UidRanges({}), "");
}

TEST(CtlTextTest, ProgressSaysHowFarHowFastAndHowLong) {
  EXPECT_EQ(ProgressText(10'000'000, 50'000'000, 0, 0, absl::Seconds(2)), "10.0 MB of 50.0 MB, 5.0 MB/s, 8s left");
  EXPECT_EQ(ProgressText(3'000'000, 0, 120, 480, absl::Seconds(3)),
            "120 of 480 messages, 3.0 MB, 1.0 MB/s, 9s left");
  EXPECT_EQ(ProgressText(0, 0, 0, 0, absl::ZeroDuration()), "0.0 MB");
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
