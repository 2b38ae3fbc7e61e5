// MailPool with a fake clock over a scripted IMAP server: connection reuse,
// the per-mailbox cap, idle logout, reconnecting before the token expires,
// and logout at shutdown.
#include "service/mail/mail_pool.h"

#include <deque>

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

// Counts of what the scripted servers saw.
struct ServerLog {
  absl::Mutex mu;
  int logins = 0;
  int logouts = 0;
  int commands = 0;
  // The next FETCH sends part of the body, then the connection dies.
  bool drop_mid_fetch = false;
};

// An IMAP server in a transport: answers each command line at once.
class ScriptedServer final : public testing::InMemoryImapTransport {
 public:
  explicit ScriptedServer(ServerLog& log)
      : InMemoryImapTransport("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] scripted\r\n"),
        log_(log) {}
  absl::Status Write(absl::string_view data) override {
    std::vector<std::string> parts = absl::StrSplit(std::string(data.substr(0, data.find("\r\n"))), ' ');
    const std::string tag = parts[0];
    const std::string command = parts.size() > 1 ? parts[1] : "";
    absl::MutexLock lock(&log_.mu);
    ++log_.commands;
    if (command == "AUTHENTICATE") {
      ++log_.logins;
    } else if (command == "STATUS") {
      absl::StrAppend(&pending_, "* STATUS INBOX (MESSAGES 7 UNSEEN 1 UIDNEXT 8 UIDVALIDITY 42)\r\n");
    } else if (command == "UID" && log_.drop_mid_fetch) {
      log_.drop_mid_fetch = false;
      absl::StrAppend(&pending_, "* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {100000}\r\n", std::string(1000, 'x'));
      return absl::OkStatus();  // and nothing more: the server is gone
    } else if (command == "LOGOUT") {
      ++log_.logouts;
      absl::StrAppend(&pending_, "* BYE bye\r\n");
    }
    absl::StrAppend(&pending_, tag, " OK done\r\n");
    return absl::OkStatus();
  }

 private:
  ServerLog& log_;
};

class MailPoolTest : public ::testing::Test {
 protected:
  MailPoolTest()
      : sealer_(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))),
        vault_(store_, sealer_, clock_),
        idp_(clock_),
        microsoft_(idp_, clock_),
        logger_(LogLevel::kError, [](absl::string_view) {}, clock_),
        tokens_(vault_, {{Provider::kMicrosoft, &microsoft_}}, clock_, logger_) {
    idp_.RegisterApp("contoso", "client-1", "s3cret");
    idp_.AddRefreshToken("rt-alice", "alice@contoso.com");
    App app;
    app.id = "contoso";
    app.tenant = "contoso";
    app.client_id = "client-1";
    app.imap_host = "imap.test";
    std::vector<CredentialInput> creds = testing::ClientSecretCredentials("s1", "s3cret", clock_.Now() + absl::Hours(24 * 100));
    EXPECT_TRUE(vault_.CreateApp(app, std::move(creds)).ok());
    Grant g;
    g.id = "alice";
    g.app = "contoso";
    g.mailbox = "alice@contoso.com";
    EXPECT_TRUE(vault_.ImportGrant(g, Secret::CopyFrom("rt-alice")).ok());
  }

  std::unique_ptr<MailPool> Pool(MailPoolOptions options = {}) {
    return std::make_unique<MailPool>(tokens_, vault_, clock_, logger_, std::move(options),
                                      [this](const ImapServer& server) {
                                        EXPECT_EQ(server.host, "imap.test");
                                        EXPECT_EQ(server.port, 993);
                                        return ImapSession::OpenOver(std::make_unique<ScriptedServer>(log_), server);
                                      });
  }
  absl::Status Status(MailPool& pool) {
    return pool.Run("alice", "status", [](ImapSession& s) { return s.Status("INBOX").status(); });
  }
  struct FetchResult {
    absl::Status status;
    uint64_t received = 0;
    int attempts = 0;
  };
  // Fetches message 7 while the server sends 1,000 bytes of it and dies.
  FetchResult FetchWhileTheServerDies(MailPool& pool, size_t chunk_size) {
    {
      absl::MutexLock lock(&log_.mu);
      log_.drop_mid_fetch = true;
    }
    FetchResult r;
    r.status = pool.Run(
        "alice", "fetch",
        [&](ImapSession& s) -> absl::Status {
          ++r.attempts;
          s.Select("INBOX").IgnoreError();
          return s.FetchSection(7, "", chunk_size, [&](absl::string_view chunk) {
            r.received += chunk.size();
            return absl::OkStatus();
          }).status();
        },
        [&] { return r.received == 0; });
    return r;
  }
  int Logins() {
    absl::MutexLock lock(&log_.mu);
    return log_.logins;
  }
  int Logouts() {
    absl::MutexLock lock(&log_.mu);
    return log_.logouts;
  }

  FakeClock clock_;
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  testing::FakeMicrosoft idp_;
  MicrosoftProvider microsoft_;
  Logger logger_;
  TokenManager tokens_;
  ServerLog log_;
};

TEST_F(MailPoolTest, ALoggedInConnectionIsReused) {
  auto pool = Pool();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Status(*pool).ok());
  EXPECT_EQ(Logins(), 1);
  EXPECT_EQ(pool->counts().idle, 1);
  EXPECT_EQ(pool->counts().in_use, 0);
}

TEST_F(MailPoolTest, IdleConnectionsAreLoggedOutAfterTheIdleTimeout) {
  MailPoolOptions options;
  options.idle_timeout = absl::Minutes(5);
  auto pool = Pool(options);
  ASSERT_TRUE(Status(*pool).ok());
  clock_.Advance(absl::Minutes(4));
  EXPECT_EQ(pool->SweepIdle(), 0);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(pool->SweepIdle(), 1);
  EXPECT_EQ(Logouts(), 1);
  EXPECT_EQ(pool->counts().idle, 0);
}

TEST_F(MailPoolTest, AConnectionIsReplacedBeforeItsTokenExpires) {
  idp_.SetExpiresIn(3600);
  auto pool = Pool();
  ASSERT_TRUE(Status(*pool).ok());
  clock_.Advance(absl::Minutes(59) + absl::Seconds(30));
  ASSERT_TRUE(Status(*pool).ok());
  EXPECT_EQ(Logins(), 2) << "a new login with a fresh token";
  EXPECT_EQ(Logouts(), 1) << "the old connection logged out";
}

TEST_F(MailPoolTest, IdleConnectionsAreCheckedBeforeReuse) {
  auto pool = Pool();
  ASSERT_TRUE(Status(*pool).ok());
  const int before = log_.commands;
  clock_.Advance(absl::Seconds(31));
  ASSERT_TRUE(Status(*pool).ok());
  EXPECT_EQ(log_.commands - before, 2) << "NOOP, then STATUS";
}

TEST_F(MailPoolTest, ShutdownLogsOutAndRefusesNewWork) {
  auto pool = Pool();
  ASSERT_TRUE(Status(*pool).ok());
  pool->Shutdown();
  EXPECT_EQ(Logouts(), 1);
  EXPECT_EQ(Status(*pool).code(), absl::StatusCode::kUnavailable);
}

TEST_F(MailPoolTest, AServerGoneMidStreamIsUnavailableAndThePoolRecovers) {
  auto pool = Pool();
  ASSERT_TRUE(Status(*pool).ok());
  FetchResult r = FetchWhileTheServerDies(*pool, 500);
  // Bytes reached the caller, so the fetch cannot be retried: UNAVAILABLE.
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(r.received, 1000u);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(pool->counts().idle, 0) << "the dead connection is not pooled";
  EXPECT_EQ(pool->counts().in_use, 0);
  ASSERT_TRUE(Status(*pool).ok());
  EXPECT_EQ(Logins(), 2);
}

TEST_F(MailPoolTest, AServerGoneBeforeAnyByteReachedTheCallerIsRetriedOnANewConnection) {
  auto pool = Pool();
  ASSERT_TRUE(Status(*pool).ok());
  FetchResult r = FetchWhileTheServerDies(*pool, 4096);
  EXPECT_EQ(r.received, 0u);
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(Logins(), 2);
  // The scripted server's second connection has no message 7.
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound) << r.status;
}

TEST_F(MailPoolTest, AppsWithoutAnImapServerSaySo) {
  App oidc;
  oidc.id = "corp";
  oidc.provider = Provider::kOidc;
  EXPECT_EQ(ImapServerFor(oidc, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  App microsoft;
  microsoft.provider = Provider::kMicrosoft;
  EXPECT_EQ(ImapServerFor(microsoft, {})->host, "outlook.office365.com");
  EXPECT_EQ(ImapServerFor(microsoft, {})->port, 993);
  App google;
  google.provider = Provider::kGoogle;
  google.imap_security = ImapSecurity::kStartTls;
  EXPECT_EQ(ImapServerFor(google, {})->host, "imap.gmail.com");
  EXPECT_EQ(ImapServerFor(google, {})->port, 143);
}

}  // namespace
}  // namespace tokenbroker
