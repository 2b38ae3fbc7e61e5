// GrantDiagnosis against the Microsoft-shaped token endpoint (JWT access
// tokens with Exchange's claims) and an IMAP server that answers the way
// Exchange Online does for each missed set-up step.
#include "service/mail/grant_diagnosis.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/idp/microsoft_provider.h"
#include "service/store/in_memory_credential_store.h"
#include "tests/support/credentials.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/in_memory_imap_transport.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// How the scripted Exchange answers.
enum class Exchange {
  kWorks,
  kNoServicePrincipal,  // tagged NO AUTHENTICATE failed.
  kNoMailboxPermission,  // AUTHENTICATE OK, then BAD User is authenticated but not connected.
  kUnreachable,
};

class ExchangeServer final : public testing::InMemoryImapTransport {
 public:
  explicit ExchangeServer(Exchange mode)
      : InMemoryImapTransport(
            "* OK The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADEAMgBDAEEAMAAwADEANgAuAG4AYQBtAA==]\r\n"),
        mode_(mode) {}
  absl::Status Write(absl::string_view data) override {
    std::vector<std::string> parts = absl::StrSplit(std::string(data.substr(0, data.find("\r\n"))), ' ');
    const std::string tag = parts[0];
    const std::string command = parts.size() > 1 ? parts[1] : "";
    if (command == "CAPABILITY") {
      absl::StrAppend(&pending_, "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID "
                                 "UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n",
                      tag, " OK CAPABILITY completed.\r\n");
    } else if (command == "AUTHENTICATE") {
      authenticated_ = mode_ != Exchange::kNoServicePrincipal;
      absl::StrAppend(&pending_, tag, authenticated_ ? " OK AUTHENTICATE completed.\r\n" : " NO AUTHENTICATE failed.\r\n");
    } else if (command == "LOGOUT") {
      absl::StrAppend(&pending_, "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n", tag,
                      " OK LOGOUT completed.\r\n");
    } else if (authenticated_ && mode_ == Exchange::kNoMailboxPermission) {
      absl::StrAppend(&pending_, tag, " BAD User is authenticated but not connected.\r\n");
    } else if (command == "LIST") {
      absl::StrAppend(&pending_, "* LIST (\\Noselect) \"/\" \"\"\r\n", tag, " OK LIST completed.\r\n");
    } else if (command == "EXAMINE") {
      absl::StrAppend(&pending_, "* 12 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n",
                      "* OK [UIDNEXT 40] The next unique identifier value\r\n", tag,
                      " OK [READ-ONLY] EXAMINE completed.\r\n");
    } else {
      absl::StrAppend(&pending_, tag, " BAD Command Error. 12\r\n");
    }
    return absl::OkStatus();
  }

 private:
  const Exchange mode_;
  bool authenticated_ = false;
};

constexpr char kTenant[] = "contoso.onmicrosoft.com";

class GrantDiagnosisTest : public ::testing::Test {
 protected:
  GrantDiagnosisTest()
      : sealer_(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))),
        vault_(store_, sealer_, clock_),
        idp_(clock_),
        microsoft_(idp_, clock_),
        logger_(LogLevel::kError, [](absl::string_view) {}, clock_),
        tokens_(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_),
        diagnosis_(vault_, tokens_, clock_, MailPoolOptions{}, [this](const ImapServer& server) {
          EXPECT_EQ(server.host, "outlook.office365.com");
          EXPECT_EQ(server.port, 993);
          if (mode_ == Exchange::kUnreachable) {
            return absl::StatusOr<std::unique_ptr<ImapSession>>(
                absl::UnavailableError("outlook.office365.com:993: connection timed out"));
          }
          return ImapSession::OpenOver(std::make_unique<ExchangeServer>(mode_), server);
        }) {
    idp_.RegisterApp(kTenant, "client-1", "s3cret");
    App app;
    app.id = "contoso";
    app.tenant = kTenant;
    app.client_id = "client-1";
    EXPECT_TRUE(vault_.CreateApp(app, testing::ClientSecretCredentials("s1", "s3cret", clock_.Now() + absl::Hours(24 * 100)))
                    .ok());
    Grant robot;
    robot.id = "robot";
    robot.app = "contoso";
    robot.mailbox = "shared@contoso.com";
    robot.kind = GrantKind::kAppOnly;
    EXPECT_TRUE(vault_.CreateGrant(robot).ok());
  }

  // "name result" for each step, and the whole report for messages.
  std::vector<std::string> Steps(const GrantDiagnosisReport& report) {
    std::vector<std::string> out;
    for (const DiagnosisStep& s : report.steps) out.push_back(absl::StrCat(s.name, " ", DiagnosisResultName(s.result)));
    return out;
  }
  const DiagnosisStep& Step(const GrantDiagnosisReport& report, const std::string& name) {
    for (const DiagnosisStep& s : report.steps) {
      if (s.name == name) return s;
    }
    static const DiagnosisStep none;
    ADD_FAILURE() << "no step " << name;
    return none;
  }
  GrantDiagnosisReport Run(const std::string& grant = "robot") {
    absl::StatusOr<GrantDiagnosisReport> report = diagnosis_.Run(grant);
    EXPECT_TRUE(report.ok()) << report.status();
    for (const DiagnosisStep& s : report->steps) {
      EXPECT_THAT(s.detail + s.fix, Not(HasSubstr("fake-access"))) << "a token in step " << s.name;
      EXPECT_THAT(s.detail + s.fix, Not(HasSubstr("s3cret")));
    }
    return *report;
  }

  FakeClock clock_;
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  testing::FakeMicrosoft idp_;
  MicrosoftProvider microsoft_;
  Logger logger_;
  TokenManager tokens_;
  Exchange mode_ = Exchange::kWorks;
  GrantDiagnosis diagnosis_;
};

TEST_F(GrantDiagnosisTest, AGrantSetUpRightPassesEveryStep) {
  GrantDiagnosisReport report = Run();
  EXPECT_THAT(Steps(report), ::testing::ElementsAre("grant passed", "credential passed", "token passed",
                                                    "claims passed", "imap_connect passed", "authenticate passed",
                                                    "select passed"));
  EXPECT_TRUE(report.passed());
  EXPECT_THAT(Step(report, "claims").detail, HasSubstr("audience https://outlook.office365.com, role IMAP.AccessAsApp"));
  EXPECT_THAT(Step(report, "claims").detail, HasSubstr(testing::FakeMicrosoft::TenantId(kTenant)));
  EXPECT_THAT(Step(report, "credential").detail, HasSubstr("s1 (client_secret) valid until"));
  EXPECT_EQ(Step(report, "select").detail, "INBOX examined read-only: 12 messages, UIDVALIDITY 14");
  EXPECT_EQ(diagnosis_.Run("nobody").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GrantDiagnosisTest, ATokenWithoutTheRoleNamesTheMissingAdminConsent) {
  idp_.SetAppRoles(kTenant, "client-1", {});
  GrantDiagnosisReport report = Run();
  EXPECT_FALSE(report.passed());
  const DiagnosisStep& claims = Step(report, "claims");
  EXPECT_EQ(claims.result, DiagnosisStep::Result::kFailed);
  EXPECT_THAT(claims.detail, HasSubstr("no IMAP.AccessAsApp role (roles: none)"));
  EXPECT_THAT(claims.fix, HasSubstr("Office 365 Exchange Online → Application permissions → IMAP.AccessAsApp → Grant "
                                    "admin consent"));
}

TEST_F(GrantDiagnosisTest, ATokenForAnotherResourceNamesTheAudience) {
  idp_.SetAudience(kTenant, "client-1", "https://graph.microsoft.com");
  GrantDiagnosisReport report = Run();
  const DiagnosisStep& claims = Step(report, "claims");
  EXPECT_EQ(claims.result, DiagnosisStep::Result::kFailed);
  EXPECT_THAT(claims.detail, HasSubstr("the audience is \"https://graph.microsoft.com\", not Exchange Online"));
  EXPECT_THAT(claims.fix, HasSubstr("https://outlook.office365.com/.default"));
}

TEST_F(GrantDiagnosisTest, AuthenticateFailedNamesTheServicePrincipal) {
  mode_ = Exchange::kNoServicePrincipal;
  GrantDiagnosisReport report = Run();
  EXPECT_THAT(Steps(report), ::testing::ElementsAre("grant passed", "credential passed", "token passed",
                                                    "claims passed", "imap_connect passed", "authenticate failed",
                                                    "select skipped"));
  const DiagnosisStep& auth = Step(report, "authenticate");
  EXPECT_THAT(auth.detail, HasSubstr("NO AUTHENTICATE failed."));
  EXPECT_THAT(auth.fix, HasSubstr("New-ServicePrincipal -AppId client-1 -ObjectId"));
  EXPECT_THAT(auth.fix, HasSubstr("App Registration's object id instead of the Enterprise Application's"));
  EXPECT_THAT(auth.fix, HasSubstr("Set-CASMailbox -Identity shared@contoso.com -ImapEnabled $true"));
}

TEST_F(GrantDiagnosisTest, AuthenticatedButNotConnectedNamesTheMailboxPermission) {
  mode_ = Exchange::kNoMailboxPermission;
  GrantDiagnosisReport report = Run();
  EXPECT_EQ(Step(report, "authenticate").result, DiagnosisStep::Result::kPassed);
  const DiagnosisStep& select = Step(report, "select");
  EXPECT_EQ(select.result, DiagnosisStep::Result::kFailed);
  EXPECT_THAT(select.detail, HasSubstr("User is authenticated but not connected"));
  EXPECT_THAT(select.fix, HasSubstr("Add-MailboxPermission -Identity shared@contoso.com -User <service principal id> "
                                    "-AccessRights FullAccess"));
}

TEST_F(GrantDiagnosisTest, UnreachableServerAndExpiringSecretAndDisabledGrant) {
  mode_ = Exchange::kUnreachable;
  clock_.Advance(absl::Hours(24 * 90));  // the secret has 10 days left
  ASSERT_TRUE(vault_.SetGrantEnabled("robot", false).ok());
  GrantDiagnosisReport report = Run();
  EXPECT_THAT(Steps(report), ::testing::ElementsAre("grant failed", "credential failed", "token skipped",
                                                    "claims skipped", "imap_connect skipped",
                                                    "authenticate skipped", "select skipped"));
  EXPECT_THAT(Step(report, "grant").fix, HasSubstr("tokenbrokerctl grant enable robot"));
  EXPECT_EQ(Step(report, "token").detail, "needs a grant that gets tokens (this one is disabled)");
  EXPECT_THAT(Step(report, "credential").detail, HasSubstr("in 10 days"));
  EXPECT_THAT(Step(report, "credential").fix, HasSubstr("tokenbrokerctl app add-credential contoso"));

  ASSERT_TRUE(vault_.SetGrantEnabled("robot", true).ok());
  report = Run();
  const DiagnosisStep& connect = Step(report, "imap_connect");
  EXPECT_EQ(connect.result, DiagnosisStep::Result::kFailed);
  EXPECT_THAT(connect.detail, HasSubstr("could not open outlook.office365.com:993"));
  EXPECT_THAT(connect.fix, HasSubstr("outbound TCP 993"));
}

}  // namespace
}  // namespace tokenbroker
