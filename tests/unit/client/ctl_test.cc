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
  // Microsoft app "a" with a client secret, through the CLI.
  void CreateApp(testing::TempDir& dir) {
    ASSERT_EQ(RunCli({"--target", server_.address(), "app", "create", "a", "--provider", "microsoft", "--tenant",
                      "t", "--client-id", "c", "--client-secret-file", dir.WriteFile("secret", "s"), "--not-after",
                      "2099-01-01"})
                  .code,
              kExitOk);
  }

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
  ASSERT_NO_FATAL_FAILURE(CreateApp(dir));
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

// A migration's file: every good line becomes a grant (its token sealed), a
// bad line is named by number with what to fix and never with its token, and
// the run can be repeated with --skip-existing.
TEST_F(CtlTest, GrantImportFromFileSendsEveryLineAndNamesTheFailedOnes) {
  testing::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(CreateApp(dir));
  std::string lines =
      "{\"grant\": \"g1\", \"app\": \"a\", \"mailbox\": \"u1@contoso.com\", \"refresh_token\": \"rt-SECRET-1\", "
      "\"labels\": {\"team\": \"mail\"}, \"scopes\": [\"https://outlook.office.com/IMAP.AccessAsUser.All\", "
      "\"offline_access\"]}\r\n";
  for (int i = 2; i <= 30; ++i) {
    absl::StrAppend(&lines, "{\"grant\": \"g", i, "\", \"app\": \"a\", \"mailbox\": \"u", i,
                    "@contoso.com\", \"refresh_token\": \"rt-SECRET-", i, "\"}\n");
  }
  lines += "\n";  // line 31: blank, skipped
  lines += "{\"grant\": \"bad1\", \"app\": \"a\", \"mailbox\": \"m@x\", \"refresh_token\": \"rt-SECRET-b1\" x}\n";
  lines += "{\"grant\": \"bad2\", \"app\": \"a\", \"refresh_token\": \"rt-SECRET-b2\"}\n";
  lines += "{\"grant\": \"bad3\", \"app\": \"a\", \"mailbox\": \"m@x\", \"refresh_tokn\": \"rt-SECRET-b3\"}\n";
  lines += "{\"grant\": \"g5\", \"app\": \"a\", \"mailbox\": \"m@x\", \"refresh_token\": \"rt-SECRET-b4\"}\n";
  lines += "{\"grant\": \"bad5\", \"app\": \"a\", \"mailbox\": \"m@x\", \"refresh_token\": [\"rt-SECRET-b5\"]}\n";
  // A token pasted where a key goes is not echoed either.
  lines += "{\"grant\": \"bad6\", \"app\": \"a\", \"mailbox\": \"m@x\", \"rt-SECRET-b6\": \"\"}\n";
  const std::string file = dir.WriteFile("grants.jsonl", lines);

  Result r = RunCli({"--target", server_.address(), "grant", "import", "--from-file", file, "--parallel", "4"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "imported 30 grants, 6 failed (lines 32, 33, 34, 35, 36, 37)\n");
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 32: INVALID_ARGUMENT: not a JSON object: "));
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 33: INVALID_ARGUMENT: \"mailbox\": required\n"));
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 34: INVALID_ARGUMENT: \"refresh_tokn\": unknown key"));
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 35 (grant \"g5\"): ALREADY_EXISTS: "));
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 36: INVALID_ARGUMENT: \"refresh_token\": expected the refresh "
                               "token as a string\n"));
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: line 37: INVALID_ARGUMENT: a key that is not a word: unknown key"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 6) << r.err;
  EXPECT_THAT(r.out + r.err, ::testing::Not(HasSubstr("rt-SECRET")));

  r = RunCli({"--target", server_.address(), "grant", "list"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1 + 30) << r.out;
  absl::StatusOr<Grant> g1 = server_.store().GetGrant("g1");
  ASSERT_TRUE(g1.ok()) << g1.status();
  EXPECT_EQ(g1->mailbox, "u1@contoso.com");
  EXPECT_EQ(g1->labels.at("team"), "mail");
  EXPECT_EQ(g1->scopes.size(), 2u);
  absl::StatusOr<Secret> token = server_.vault().OpenRefreshToken(*g1);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->Reveal(), "rt-SECRET-1");
  absl::StatusOr<Grant> g30 = server_.store().GetGrant("g30");
  ASSERT_TRUE(g30.ok()) << g30.status();
  EXPECT_EQ(server_.vault().OpenRefreshToken(*g30)->Reveal(), "rt-SECRET-30");

  // Again, as after an interruption: what is there is done, the bad lines
  // are still named.
  r = RunCli({"--target", server_.address(), "grant", "import", "--from-file", file, "--skip-existing"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "imported 0 grants, 31 already existed, 5 failed (lines 32, 33, 34, 36, 37)\n");

  r = RunCli({"--target", server_.address(), "--output", "json", "grant", "import", "--from-file",
              dir.WriteFile("one.jsonl", "{\"grant\": \"g31\", \"app\": \"a\", \"mailbox\": \"u31@contoso.com\", "
                                         "\"refresh_token\": \"rt-SECRET-31\"}\n")});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "{\"imported\": 1, \"already_existed\": 0, \"failed\": 0, \"failed_lines\": []}\n");
}

TEST_F(CtlTest, GrantCreateFromFileMakesAppOnlyGrants) {
  testing::TempDir dir;
  ASSERT_NO_FATAL_FAILURE(CreateApp(dir));
  std::string lines;
  for (int i = 1; i <= 20; ++i) {
    absl::StrAppend(&lines, "{\"grant\": \"shared-", i, "\", \"app\": \"a\", \"mailbox\": \"shared-", i,
                    "@contoso.com\"}\n");
  }
  lines += "{\"grant\": \"s21\", \"app\": \"a\", \"mailbox\": \"s21@contoso.com\", \"kind\": \"delegated\"}\n";
  Result r = RunCli({"--target", server_.address(), "grant", "create", "--from-file",
                     dir.WriteFile("shared.jsonl", lines)});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out, "created 20 grants, 1 failed (line 21)\n");
  EXPECT_EQ(r.err, "tokenbrokerctl: line 21: INVALID_ARGUMENT: \"kind\": expected app_only or service_account\n");
  absl::StatusOr<Grant> g = server_.store().GetGrant("shared-20");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->kind, GrantKind::kAppOnly);
  EXPECT_EQ(g->mailbox, "shared-20@contoso.com");
}

TEST(CtlUsageTest, FromFileTakesNoPerGrantFlags) {
  Result r = RunCli({"grant", "import", "g1", "--from-file", "grants.jsonl"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("grant import: --from-file: every line names its grant, app and mailbox; drop GRANT"));
  r = RunCli({"grant", "create", "--from-file", "grants.jsonl", "--app", "a"});
  EXPECT_EQ(r.code, kExitUsage);
  r = RunCli({"grant", "create", "--from-file", "grants.jsonl", "--parallel", "0"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--parallel: expected 1 to 64"));
  r = RunCli({"grant", "create", "g1", "--app", "a", "--mailbox", "m@x", "--skip-existing"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--skip-existing: only with --from-file"));
  r = RunCli({"grant", "create", "g1", "--app", "a", "--mailbox", "m@x", "--parallel", "4"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("--parallel: only with --from-file"));
  r = RunCli({"--target", "127.0.0.1:1", "grant", "create", "--from-file", "/nonexistent/grants.jsonl"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.err, "tokenbrokerctl: INVALID_ARGUMENT: --from-file: cannot read /nonexistent/grants.jsonl\n");
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
