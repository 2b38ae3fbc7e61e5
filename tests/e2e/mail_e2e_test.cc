// MailService end to end: tokenbrokerctl -> tokenbrokerd -> IMAP over TLS ->
// a real Dovecot that checks every token by introspection at the
// Microsoft-shaped identity provider. The broker gets its own tokens with its
// own token engine; message bytes are compared by hash with what was seeded.
#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/broker_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/crypto/random.h"
#include "tests/support/daemon.h"
#include "tests/support/dovecot_server.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/mail_test_env.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;

constexpr const char* kTenant = testing::MailTestEnv::kTenant;
constexpr char kSecret[] = "mail-e2e-Client-S3cret";

std::string Message(const std::string& subject, const std::string& body) {
  return absl::StrCat("From: Bob <bob@example.com>\r\nTo: alice@contoso.com\r\nSubject: ", subject,
                      "\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <", RandomHex(8),
                      "@test>\r\n\r\n", body, "\r\n");
}

class MailE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env_ = new testing::MailTestEnv(kSecret);
    ASSERT_TRUE(env_->StartServers());
    dir_ = &env_->dir();
    idp_ = &env_->idp();
    dovecot_ = &env_->dovecot();
    daemon_ = &env_->daemon();

    // The mailboxes: odd folder names, a few thousand messages, one of 50 MB.
    std::vector<testing::SeedMessage> seed = {
        {"INBOX", Message("Quarterly report", "Numbers."), true},
        {"INBOX", Message("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "Hallo."), false},
        {"Entwürfe", Message("Draft", "d"), false},
        {"Quote \"me\"", Message("Quoted", "q"), true},
        {"Sent Items", Message("Sent", "s"), true},
        {"Sent", Message("Re: Quarterly report", "Thanks."), true},
    };
    for (int i = 0; i < 3000; ++i) seed.push_back({"Archive", Message(absl::StrCat("Archived ", i), "a"), true});
    big_ = new std::string(Message("Big attachment", std::string(50 * 1024 * 1024, 'x')));
    seed.push_back({"Big", *big_, true});
    ASSERT_TRUE(dovecot_->Seed("alice@contoso.com", seed).ok());
    ASSERT_TRUE(dovecot_->Seed("bob@contoso.com", {{"INBOX", Message("For Bob", "b"), false}}).ok());

    // GetMessage and FetchMessage on 2 threads each of their own that do not
    // poll (as by default; on the stream workers, and threads that poll, are
    // checked in api_test), or FetchMessage on the stream workers when CTest
    // runs the suite as mail_e2e_test_fetch_message_stream_workers.
    const char* fetch_threads = std::getenv("TOKENBROKER_E2E_FETCH_MESSAGE_THREADS");
    ASSERT_TRUE(env_->StartDaemon(
        absl::StrCat("  workers: 2\n  stream_workers: 2\n  get_message_threads: 2\n  get_message_threads_poll: false\n",
                     "  fetch_message_threads: ", fetch_threads != nullptr ? fetch_threads : "2", "\n")));
    for (const char* user : {"alice", "bob"}) env_->ImportGrant(user, absl::StrCat(user, "@contoso.com"));
  }
  static void TearDownTestSuite() {
    if (daemon_ != nullptr && daemon_->process != nullptr) {
      const std::string metrics = testing::HttpGet(daemon_->metrics_address, "/metrics").value_or("");
      CommandResult audit = Ctl({"--output", "json", "audit", "list", "--limit", "1000"});
      // Every mail operation is in the audit trail.
      EXPECT_THAT(audit.out, HasSubstr("\"method\": \"MailService/FetchMessage\""));
      EXPECT_THAT(audit.out, HasSubstr("\"method\": \"MailService/GetMessage\""));
      EXPECT_THAT(audit.out, HasSubstr("\"action\": \"mail.read\""));
      EXPECT_EQ(daemon_->Stop(), 0);
      const std::string log = daemon_->process->Stderr();
      // No secret, refresh token or access token in the log, the metrics or
      // the audit trail.
      for (const std::string& text : {log, metrics, audit.out}) {
        EXPECT_THAT(text, Not(HasSubstr(kSecret)));
        EXPECT_THAT(text, Not(HasSubstr("0.rt-")));
        EXPECT_THAT(text, Not(HasSubstr("fake-access-")));
      }
    }
    delete env_;
    delete big_;
  }

  static CommandResult Ctl(const std::vector<std::string>& args) { return env_->Ctl(args); }
  static std::unique_ptr<BrokerClient> Client() {
    ClientOptions options;
    options.target = daemon_->grpc_address;
    return *BrokerClient::Create(options);
  }
  // Starts streaming the 50 MB message in chunks of `chunk_size`.
  static std::unique_ptr<grpc::ClientReader<v1::FetchMessageResponse>> FetchBig(BrokerClient& client,
                                                                               grpc::ClientContext& context,
                                                                               uint32_t chunk_size = 64 * 1024) {
    v1::FetchMessageRequest request;
    request.set_grant("alice");
    request.set_folder("Big");
    request.set_uid(1);
    request.set_chunk_size(chunk_size);
    return client.mail().FetchMessage(&context, request);
  }
  static CommandResult MustCtl(const std::vector<std::string>& args) { return env_->MustCtl(args); }
  static std::string Metric(const std::string& prefix) { return env_->Metric(prefix); }

  static testing::MailTestEnv* env_;
  static testing::TempDir* dir_;
  static testing::FakeMicrosoft* idp_;
  static testing::DovecotServer* dovecot_;
  static testing::RunningDaemon* daemon_;
  static std::string* big_;
};

testing::MailTestEnv* MailE2ETest::env_;
testing::TempDir* MailE2ETest::dir_;
testing::FakeMicrosoft* MailE2ETest::idp_;
testing::DovecotServer* MailE2ETest::dovecot_;
testing::RunningDaemon* MailE2ETest::daemon_;
std::string* MailE2ETest::big_;

// The broker runs FetchMessage where this run configured it: on the stream
// workers (no thread named fetch-message) or on 2 threads of its own.
TEST_F(MailE2ETest, FetchMessageRunsWhereConfigured) {
  const pid_t pid = daemon_->process->pid();
  EXPECT_EQ(testing::ThreadsNamed(pid, "get-message"), 2);
  const char* configured = std::getenv("TOKENBROKER_E2E_FETCH_MESSAGE_THREADS");
  EXPECT_EQ(testing::ThreadsNamed(pid, "fetch-message"), configured != nullptr ? std::atoi(configured) : 2);
}

TEST_F(MailE2ETest, FoldersComeBackWithTheirNamesAndSpecialUse) {
  CommandResult r = MustCtl({"mail", "folders", "alice"});
  for (const char* name : {"INBOX\n", "Entwürfe\n", "Quote \"me\"\n", "Sent Items\n", "Archive\n", "Sent  \\Sent\n"}) {
    EXPECT_THAT(r.out, HasSubstr(name));
  }
  CommandResult json = MustCtl({"--output", "json", "mail", "folders", "alice"});
  EXPECT_THAT(json.out, HasSubstr("\"special_use\": \"\\\\Sent\""));
  EXPECT_THAT(MustCtl({"mail", "status", "alice", "Entwürfe"}).out, HasSubstr("Entwürfe: 1 messages, 1 unseen"));
  EXPECT_THAT(MustCtl({"mail", "status", "alice", "Archive"}).out, HasSubstr("3000 messages, 0 unseen"));
}

// `tokenbrokerctl diagnose` against the real Dovecot over real TLS: every
// step of a delegated grant passes (exit 0). An app-only grant whose app was
// never given IMAP.AccessAsApp fails at the token's claims, naming the Entra
// ID permission to grant (exit 1, JSON for scripts); a folder that does not
// exist fails the last step, naming the command that lists them.
TEST_F(MailE2ETest, DiagnoseChecksEveryStepAgainstTheRealServer) {
  CommandResult ok = MustCtl({"diagnose", "bob"});
  EXPECT_THAT(ok.out, HasSubstr("7 of 7 steps passed"));
  EXPECT_THAT(ok.out, HasSubstr("audience https://outlook.office.com, scope IMAP.AccessAsUser.All"));
  EXPECT_THAT(ok.out, HasSubstr(absl::StrCat("127.0.0.1:", dovecot_->imaps_port(), " answered over TLS")));
  EXPECT_THAT(ok.out, HasSubstr("INBOX examined read-only: 1 messages"));

  idp_->RegisterApp(kTenant, "client-no-role", kSecret);
  idp_->SetAppRoles(kTenant, "client-no-role", {});
  MustCtl({"app", "create", "contoso-no-role", "--provider", "microsoft", "--tenant", kTenant, "--client-id",
           "client-no-role", "--authority-host", env_->authority(), "--client-secret-file", dir_->File("secret"),
           "--not-after", "2099-01-01", "--imap-host", "127.0.0.1", "--imap-port",
           std::to_string(dovecot_->imaps_port())});
  MustCtl({"grant", "create", "robot-no-role", "--app", "contoso-no-role", "--mailbox", "bob@contoso.com"});
  CommandResult bad = Ctl({"--output", "json", "diagnose", "robot-no-role"});
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
  EXPECT_THAT(bad.out, HasSubstr("\"passed\": false"));
  EXPECT_THAT(bad.out, HasSubstr("the token has no IMAP.AccessAsApp role (roles: none)"));
  EXPECT_THAT(bad.out, HasSubstr("IMAP.AccessAsApp → Grant admin consent"));

  CommandResult folder = Ctl({"diagnose", "bob", "--folder", "No Such Folder"});
  EXPECT_EQ(folder.exit_code, 1);
  EXPECT_THAT(folder.out, HasSubstr("FAIL  select"));
  EXPECT_THAT(folder.out, HasSubstr("fix: the mailbox has no folder \"No Such Folder\": list them with "
                                    "`tokenbrokerctl mail folders bob`"));
  EXPECT_THAT(folder.out, HasSubstr("6 of 7 steps passed, 1 failed"));
}

TEST_F(MailE2ETest, SearchReturnsTheRightMessageOutOfThousands) {
  CommandResult r = MustCtl({"--output", "json", "mail", "search", "alice", "Archive", "--subject", "Archived 1234"});
  EXPECT_THAT(r.out, HasSubstr("\"total_matches\": 1"));
  EXPECT_THAT(r.out, HasSubstr("\"subject\": \"Archived 1234\""));
  // The internal date, read from IMAP's date-time, is when the message was
  // delivered (seeded): today, not the header's date.
  auto day = [](absl::Time t) {
    return absl::StrCat("\"internal_date\": \"", absl::FormatTime("%Y-%m-%dT", t, absl::UTCTimeZone()));
  };
  // (Seeded at most a few minutes ago: it may have been yesterday, just.)
  EXPECT_THAT(r.out, ::testing::AnyOf(HasSubstr(day(absl::Now())), HasSubstr(day(absl::Now() - absl::Minutes(10)))));
  const size_t at = r.out.find("\"uid\": ");
  ASSERT_NE(at, std::string::npos);
  const std::string uid = r.out.substr(at + 7, r.out.find_first_of(",\n", at + 7) - at - 7);
  CommandResult fetched = MustCtl({"mail", "fetch", "alice", "Archive", uid});
  EXPECT_THAT(fetched.out, HasSubstr("Subject: Archived 1234\r\n"));
  CommandResult text = MustCtl({"mail", "search", "alice", "INBOX", "--unseen"});
  EXPECT_THAT(text.out, HasSubstr("1 matching"));
  EXPECT_THAT(text.out, HasSubstr("Grüße"));
  CommandResult limited = MustCtl({"--output", "json", "mail", "search", "alice", "Archive", "--limit", "5"});
  EXPECT_THAT(limited.out, HasSubstr("\"total_matches\": 3000"));
  std::vector<std::string> pieces = absl::StrSplit(limited.out, "\"uid\":");
  EXPECT_EQ(pieces.size(), 6u) << "five summaries";
}

TEST_F(MailE2ETest, ManyMessagesComeInOneCallWithTheirBytesIntact) {
  const std::string out = dir_->File("many");
  ASSERT_EQ(mkdir(out.c_str(), 0700), 0);
  // 1000 of the 3000 archived messages and one UID that does not exist.
  CommandResult r = MustCtl({"mail", "fetch-many", "alice", "Archive", "1001:1999,99999", "--output-dir", out});
  EXPECT_THAT(r.err, HasSubstr("999 of 1000 messages"));
  for (int uid : {1001, 1500, 1999}) {
    EXPECT_THAT(testing::ReadFile(absl::StrCat(out, "/", uid, ".eml")),
                HasSubstr(absl::StrCat("Subject: Archived ", uid - 1, "\r\n")));
  }
  // Byte for byte what FetchMessage gives for the same UID.
  EXPECT_EQ(testing::ReadFile(out + "/1234.eml"), MustCtl({"mail", "fetch", "alice", "Archive", "1234"}).out);
  EXPECT_EQ(testing::ReadFile(out + "/99999.eml"), "");
  // A large message among small ones: spread over responses, intact.
  const std::string big = dir_->File("many-big");
  ASSERT_EQ(mkdir(big.c_str(), 0700), 0);
  MustCtl({"mail", "fetch-many", "alice", "Big", "1", "--output-dir", big});
  EXPECT_EQ(Sha256(testing::ReadFile(big + "/1.eml")), Sha256(*big_));
  // Headers only, and the limits.
  MustCtl({"mail", "fetch-many", "alice", "Archive", "7", "--headers", "--output-dir", out});
  EXPECT_TRUE(absl::EndsWith(testing::ReadFile(out + "/7.eml"), "\r\n\r\n"));
  EXPECT_EQ(Ctl({"mail", "fetch-many", "alice", "Archive", "1:1001", "--output-dir", out}).exit_code, 2);
}

TEST_F(MailE2ETest, ALargeMessageStreamsWithItsBytesIntactAndFlatMemory) {
  const std::string out = dir_->File("big.eml");
  // The broker's peak memory while it streams 50 MB: it holds a few chunks,
  // never the message.
  const pid_t broker = daemon_->process->pid();
  testing::ResetPeakResident(broker);
  const uint64_t before = testing::PeakResidentBytes(broker);
  ASSERT_GT(before, 0u) << "cannot read the broker's memory from /proc";
  CommandResult r = MustCtl({"mail", "fetch", "alice", "Big", "1", "--output", out});
  const uint64_t growth = testing::PeakResidentBytes(broker) - before;
  EXPECT_LT(growth, 24u << 20) << "the broker's peak memory grew by " << (growth >> 20) << " MB";
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(big_->size(), " bytes written")));
  const std::string fetched = testing::ReadFile(out);
  EXPECT_EQ(fetched.size(), big_->size());
  EXPECT_TRUE(Sha256(fetched) == Sha256(*big_)) << "the fetched bytes differ from the seeded ones";
  EXPECT_THAT(Metric("tokenbroker_imap_fetched_bytes_total"), Not(HasSubstr(" 0\n")));
  // Fetching never marks mail read.
  EXPECT_THAT(MustCtl({"mail", "status", "alice", "INBOX"}).out, HasSubstr("1 unseen"));
  CommandResult headers = MustCtl({"mail", "fetch", "alice", "Big", "1", "--headers"});
  EXPECT_TRUE(absl::EndsWith(headers.out, "\r\n\r\n"));
  EXPECT_LT(headers.out.size(), 1000u);
}

// The largest chunk_size allowed still gives responses that a client with
// gRPC's default 4 MiB receive limit accepts.
TEST_F(MailE2ETest, TheLargestChunkSizeFitsAClientsDefaultMessageLimit) {
  auto client = Client();
  constexpr uint32_t kLargest = 4 * 1024 * 1024;
  {
    std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(2));
    auto reader = FetchBig(*client, *context, kLargest);
    v1::FetchMessageResponse response;
    std::string data;
    size_t largest = 0;
    while (reader->Read(&response)) {
      largest = std::max(largest, response.data().size());
      data += response.data();
    }
    grpc::Status status = reader->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_LE(largest, 4000000u);
    EXPECT_TRUE(Sha256(data) == Sha256(*big_)) << "FetchMessage: the fetched bytes differ from the seeded ones";
  }
  {
    std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(2));
    v1::FetchMessagesRequest request;
    request.set_grant("alice");
    request.set_folder("Big");
    request.add_uids(1);
    request.set_chunk_size(kLargest);
    auto reader = client->mail().FetchMessages(context.get(), request);
    v1::FetchMessagesResponse response;
    std::string data;
    while (reader->Read(&response)) {
      for (const v1::FetchPiece& piece : response.pieces()) data += piece.data();
    }
    grpc::Status status = reader->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(Sha256(data) == Sha256(*big_)) << "FetchMessages: the fetched bytes differ from the seeded ones";
  }
}

TEST_F(MailE2ETest, ATokenRevokedAtTheProviderIsRecoveredByOneRefresh) {
  // The broker holds a token for bob that the provider then revokes: the mail
  // server refuses it, the broker refreshes once and logs in.
  MustCtl({"token", "get", "bob"});
  idp_->RevokeAccessTokens("bob@contoso.com");
  const int before = idp_->requests();
  CommandResult r = MustCtl({"mail", "status", "bob", "INBOX"});
  EXPECT_THAT(r.out, HasSubstr("1 messages"));
  EXPECT_EQ(idp_->requests(), before + 1) << "exactly one refresh";
  EXPECT_THAT(Metric("tokenbroker_imap_auth_failures_total"), HasSubstr("{kind=\"rejected\"} 1"));
}

TEST_F(MailE2ETest, APooledConnectionTheServerDroppedIsReplaced) {
  // After this call its connection waits in the pool; the server then drops
  // it. The next call finds it dead and runs on a new connection.
  MustCtl({"mail", "status", "alice", "INBOX"});
  EXPECT_THAT(Metric("tokenbroker_imap_connections"), Not(HasSubstr("{state=\"idle\"} 0")));
  ASSERT_TRUE(dovecot_->Kick("alice@contoso.com").ok());
  CommandResult r = MustCtl({"mail", "status", "alice", "INBOX"});
  EXPECT_THAT(r.out, HasSubstr("INBOX: 2 messages"));
  // Not by tokenbrokerctl retrying an UNAVAILABLE answer: the broker never
  // gave one.
  EXPECT_THAT(Metric("tokenbroker_grpc_requests_total{code=\"UNAVAILABLE\",method=\"tokenbroker.v1.MailService/"
                     "GetFolderStatus\"}"),
              HasSubstr("} 0"));
}

TEST_F(MailE2ETest, AServerGoneMidStreamIsUnavailableAndThePoolRecovers) {
  std::unique_ptr<BrokerClient> client = Client();
  std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(5));
  auto reader = FetchBig(*client, *context);
  // Take the metadata and the first chunk, and stop reading: the broker
  // waits for us, so Dovecot is mid-message when its process is killed.
  v1::FetchMessageResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_TRUE(response.has_metadata());
  ASSERT_TRUE(reader->Read(&response));
  uint64_t received = response.data().size();
  ASSERT_TRUE(dovecot_->Kick("alice@contoso.com").ok());
  while (reader->Read(&response)) received += response.data().size();
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << status.error_message();
  EXPECT_LT(received, big_->size());
  // The next fetch runs on a new connection, bytes intact.
  const std::string out = dir_->File("after-kick.eml");
  MustCtl({"mail", "fetch", "alice", "Big", "1", "--output", out});
  EXPECT_EQ(Sha256(testing::ReadFile(out)), Sha256(*big_));
}

// Streams that a slow reader holds up keep their threads (the 2 stream
// workers, or FetchMessage's 2), never the workers of the short calls.
TEST_F(MailE2ETest, StreamsHeldUpByASlowReaderDoNotStarveShortCalls) {
  std::unique_ptr<BrokerClient> client = Client();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::FetchMessageResponse>>> readers;
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(client->NewContext(absl::Minutes(5)));
    readers.push_back(FetchBig(*client, *contexts.back()));
    v1::FetchMessageResponse response;
    ASSERT_TRUE(readers.back()->Read(&response));  // the stream is running, and then not read
  }
  // Both threads wait for their reader; the short calls still run, as
  // many as the workers and the pool allow.
  for (int i = 0; i < 4; ++i) {
    EXPECT_THAT(MustCtl({"mail", "status", "bob", "INBOX"}).out, HasSubstr("1 messages"));
    EXPECT_THAT(MustCtl({"mail", "folders", "alice"}).out, HasSubstr("Archive"));
  }
  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) {
    v1::FetchMessageResponse response;
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
  }
}

// Re-consent that moves a grant to another mailbox: the pooled sessions of the
// old mailbox go, and the next call reads the new one.
TEST_F(MailE2ETest, ReconsentToAnotherMailboxReadsTheNewMailbox) {
  idp_->AddRefreshToken("0.rt-desk", "alice@contoso.com");
  MustCtl({"grant", "import", "desk", "--app", "contoso", "--mailbox", "alice@contoso.com", "--refresh-token-file",
           dir_->WriteFile("rt-desk", "0.rt-desk")});
  EXPECT_THAT(MustCtl({"mail", "folders", "desk"}).out, HasSubstr("Entwürfe\n"));  // a session of alice's, pooled

  idp_->SetDeviceCodeTimes(1, 120);
  auto consent = testing::Subprocess::Start({testing::CtlPath(), "--target", daemon_->grpc_address, "consent",
                                             "device", "desk", "--app", "contoso", "--mailbox", "bob@contoso.com"});
  ASSERT_TRUE(consent.ok()) << consent.status();
  ASSERT_TRUE((*consent)->WaitForStderrLine(
      [](const std::string& l) { return absl::StrContains(l, "Waiting for the sign-in"); }, absl::Seconds(30)))
      << (*consent)->Stderr();
  idp_->ApproveDeviceCode(idp_->LatestUserCode(), "bob@contoso.com");
  absl::StatusOr<int> exit = (*consent)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok());
  ASSERT_EQ(*exit, 0) << (*consent)->Stderr();

  CommandResult folders = MustCtl({"mail", "folders", "desk"});
  EXPECT_THAT(folders.out, Not(HasSubstr("Entwürfe")));
  CommandResult search = MustCtl({"--output", "json", "mail", "search", "desk", "INBOX", "--subject", "For Bob"});
  EXPECT_THAT(search.out, HasSubstr("\"total_matches\": 1"));
  MustCtl({"grant", "delete", "desk"});
}

TEST_F(MailE2ETest, OneMessageComesWholeInOneResponseAsFetchMessageSendsIt) {
  std::unique_ptr<BrokerClient> client = Client();
  auto get = [&](const std::string& folder, uint32_t uid, uint32_t max_size = 0,
                 v1::FetchMessageRequest::Part part = v1::FetchMessageRequest::PART_UNSPECIFIED,
                 v1::GetMessageResponse* response = nullptr) {
    v1::GetMessageRequest request;
    request.set_grant("alice");
    request.set_folder(folder);
    request.set_uid(uid);
    request.set_max_size(max_size);
    request.set_part(part);
    v1::GetMessageResponse ignored;
    std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Seconds(60));
    return client->mail().GetMessage(context.get(), request, response != nullptr ? response : &ignored);
  };
  // The bytes FetchMessage streams, with the metadata its first response
  // carries.
  v1::GetMessageResponse archived;
  ASSERT_TRUE(get("Archive", 1234, 0, v1::FetchMessageRequest::PART_UNSPECIFIED, &archived).ok());
  EXPECT_EQ(archived.data(), MustCtl({"mail", "fetch", "alice", "Archive", "1234"}).out);
  EXPECT_THAT(archived.data(), HasSubstr("Subject: Archived 1233\r\n"));
  EXPECT_EQ(archived.metadata().uid(), 1234u);
  EXPECT_EQ(archived.metadata().size(), archived.data().size());
  EXPECT_NE(archived.metadata().uid_validity(), 0u);
  EXPECT_THAT(archived.metadata().flags(), ::testing::Contains("\\Seen"));
  EXPECT_TRUE(archived.metadata().has_internal_date());
  v1::GetMessageResponse headers;
  ASSERT_TRUE(get("Archive", 1234, 0, v1::FetchMessageRequest::PART_HEADERS, &headers).ok());
  EXPECT_TRUE(absl::StartsWith(archived.data(), headers.data()));
  EXPECT_TRUE(absl::EndsWith(headers.data(), "\r\n\r\n"));
  // Reading never marks mail read (INBOX holds one unseen message, UID 2).
  ASSERT_TRUE(get("INBOX", 2).ok());
  EXPECT_THAT(MustCtl({"mail", "status", "alice", "INBOX"}).out, HasSubstr("1 unseen"));
  // The audit trail says which message was read.
  ASSERT_TRUE(get("Archive", 2999).ok());
  bool audited = false;
  for (absl::string_view line : absl::StrSplit(MustCtl({"audit", "list", "--limit", "20"}).out, '\n')) {
    audited = audited || (absl::StrContains(line, "MailService/GetMessage") && absl::StrContains(line, "uid 2999"));
  }
  EXPECT_TRUE(audited) << "no audit event of GetMessage for uid 2999";

  // max_size is a limit to the byte: larger messages are refused before a
  // byte is read, naming the size and the way out, and the next call works.
  const uint32_t size = static_cast<uint32_t>(archived.data().size());
  EXPECT_TRUE(get("Archive", 1234, size).ok());
  grpc::Status over = get("Archive", 1234, size - 1);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(over.error_message(), HasSubstr(absl::StrCat("uid 1234 is ", size, " bytes, more than max_size")));
  grpc::Status big = get("Big", 1);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(big.error_message(), HasSubstr(absl::StrCat(big_->size(), " bytes, more than max_size (1048576)")));
  EXPECT_THAT(big.error_message(), HasSubstr("FetchMessage"));
  EXPECT_TRUE(get("Archive", 1234).ok());

  // Bad requests name the field.
  grpc::Status too_large = get("Archive", 1234, 4000001);
  EXPECT_EQ(too_large.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(too_large.error_message(), "max_size: at most 4000000 bytes");
  EXPECT_EQ(get("Archive", 0).error_message(), "uid: required");
  EXPECT_EQ(get("Archive", 1, 0, v1::FetchMessageRequest::PART_SECTION).error_message(),
            "section: required with PART_SECTION");
  EXPECT_EQ(get("Archive", 99999).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetMessageRequest stale;
  stale.set_grant("alice");
  stale.set_folder("Archive");
  stale.set_uid(1);
  stale.set_uid_validity(archived.metadata().uid_validity() + 1);
  v1::GetMessageResponse unused;
  std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Seconds(60));
  grpc::Status status = client->mail().GetMessage(context.get(), stale, &unused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("UIDVALIDITY"));
  // Like every mail call, it needs a deadline.
  grpc::ClientContext no_deadline;
  status = client->mail().GetMessage(&no_deadline, stale, &unused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("deadline"));
}

TEST_F(MailE2ETest, BadRequestsGetTheRightCodes) {
  CommandResult crlf = Ctl({"mail", "status", "alice", "INBOX\r\nt1 DELETE INBOX"});
  EXPECT_EQ(crlf.exit_code, 1);
  EXPECT_THAT(crlf.err, HasSubstr("INVALID_ARGUMENT: folder: must not contain CR, LF or NUL"));
  EXPECT_THAT(dovecot_->Log(), Not(HasSubstr("DELETE")));
  CommandResult missing = Ctl({"mail", "search", "alice", "No Such Folder"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  CommandResult validity = Ctl({"mail", "fetch", "alice", "INBOX", "1", "--uid-validity", "1"});
  EXPECT_EQ(validity.exit_code, 1);
  EXPECT_THAT(validity.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(validity.err, HasSubstr("UIDVALIDITY"));
  CommandResult no_grant = Ctl({"mail", "folders", "nobody"});
  EXPECT_THAT(no_grant.err, HasSubstr("NOT_FOUND"));
  CommandResult no_uid = Ctl({"mail", "fetch", "alice", "INBOX", "99999"});
  EXPECT_THAT(no_uid.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(Metric("tokenbroker_imap_operations_total{operation=\"search\",result=\"NOT_FOUND\"}"),
              Not(HasSubstr("} 0")));
}

}  // namespace
}  // namespace tokenbroker
