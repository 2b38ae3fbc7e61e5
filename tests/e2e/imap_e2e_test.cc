// The IMAP session against a real Dovecot that checks every OAuth token by
// introspection at the (Microsoft-shaped) identity provider: TLS both ways,
// both SASL mechanisms, folders with awkward names, search, envelopes and
// streamed bodies compared byte for byte with what was seeded.
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/crypto/random.h"
#include "service/imap/imap_session.h"
#include "tests/support/dovecot_server.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"

namespace tokenbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Message(const std::string& from, const std::string& subject, const std::string& body,
                    const std::string& extra_headers = "") {
  return absl::StrCat("From: ", from, "\r\nTo: alice@contoso.com\r\nSubject: ", subject,
                      "\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <", RandomHex(8),
                      "@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n", extra_headers, "\r\n",
                      body, "\r\n");
}

class ImapE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    idp_ = new testing::FakeMicrosoft(SystemClock::Get(), "127.0.0.1");
    tls_ = new testing::CertificateFiles(testing::MakeSelfSignedCertificate(*dir_, "idp", 30, "rsa", "IP:127.0.0.1"));
    server_ = new testing::HttpsServer(*idp_, "");
    ASSERT_TRUE(server_->Start(tls_->certificate, tls_->private_key).ok());
    idp_->SetHost(absl::StrCat("127.0.0.1:", server_->port()));
    auto dovecot = testing::DovecotServer::Start(absl::StrCat("https://127.0.0.1:", server_->port(), "/introspect"),
                                                 tls_->certificate);
    ASSERT_TRUE(dovecot.ok()) << dovecot.status();
    dovecot_ = dovecot->release();
    seeded_ = new std::vector<testing::SeedMessage>{
        {"INBOX", Message("Bob <bob@example.com>", "Quarterly report", "Numbers."), true},
        {"INBOX", Message("=?UTF-8?B?SsO8cmdlbg==?= <juergen@example.de>", "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "Hallo."),
         false},
        {"INBOX", Message("Carol <carol@example.com>", "Grüße aus Köln (8-bit)", "Raw UTF-8 header."), false},
        {"Sent", Message("Alice <alice@contoso.com>", "Re: Quarterly report", "Thanks."), true},
        {"Sent Items", Message("Alice <alice@contoso.com>", "In a folder with a space", "x"), true},
        {"Entwürfe", Message("Alice <alice@contoso.com>", "Draft", "y"), false},
        {"Quote \"me\"", Message("Alice <alice@contoso.com>", "Quoted folder", "z"), true},
    };
    ASSERT_TRUE(dovecot_->Seed("alice", *seeded_).ok());
  }
  static void TearDownTestSuite() {
    delete dovecot_;
    server_->Stop();
    delete server_;
    delete idp_;
    delete tls_;
    delete seeded_;
    delete dir_;
  }

  // An access token the identity provider issued for `user` (what the token
  // engine would hand out).
  static Secret TokenFor(const std::string& user) {
    const std::string rt = "0.rt-seed-" + user;
    idp_->RegisterApp("contoso", "client-1", "s3cret");
    idp_->AddRefreshToken(rt, user);
    HttpRequest request;
    request.url = absl::StrCat("https://127.0.0.1:", server_->port(), "/contoso/oauth2/v2.0/token");
    request.body = FormEncode({{"client_id", "client-1"},
                               {"client_secret", "s3cret"},
                               {"grant_type", "refresh_token"},
                               {"refresh_token", rt},
                               {"scope", "offline_access https://outlook.office.com/IMAP.AccessAsUser.All"}});
    absl::StatusOr<HttpResponse> response = idp_->Send(request);
    const std::string& body = response->body;
    const size_t at = body.find("\"access_token\":\"") + 16;
    return Secret::CopyFrom(body.substr(at, body.find('"', at) - at));
  }

  static ImapServer Server(bool starttls) {
    ImapServer s;
    s.host = "127.0.0.1";
    s.port = starttls ? dovecot_->imap_port() : dovecot_->imaps_port();
    s.starttls = starttls;
    s.ca_file = dovecot_->ca_file();
    return s;
  }

  static std::unique_ptr<ImapSession> LoggedIn(SaslMechanism mechanism = SaslMechanism::kXoauth2,
                                               bool starttls = false) {
    absl::StatusOr<std::unique_ptr<ImapSession>> session = ImapSession::Open(Server(starttls));
    EXPECT_TRUE(session.ok()) << session.status();
    if (!session.ok()) return nullptr;
    absl::Status auth = (*session)->Authenticate("alice", TokenFor("alice"), mechanism);
    EXPECT_TRUE(auth.ok()) << auth << "\n" << dovecot_->Log();
    return *std::move(session);
  }

  static testing::TempDir* dir_;
  static testing::FakeMicrosoft* idp_;
  static testing::CertificateFiles* tls_;
  static testing::HttpsServer* server_;
  static testing::DovecotServer* dovecot_;
  static std::vector<testing::SeedMessage>* seeded_;
};

testing::TempDir* ImapE2ETest::dir_;
testing::FakeMicrosoft* ImapE2ETest::idp_;
testing::CertificateFiles* ImapE2ETest::tls_;
testing::HttpsServer* ImapE2ETest::server_;
testing::DovecotServer* ImapE2ETest::dovecot_;
std::vector<testing::SeedMessage>* ImapE2ETest::seeded_;

TEST_F(ImapE2ETest, Xoauth2OverImplicitTlsListsFoldersWithTheirRealNames) {
  std::unique_ptr<ImapSession> session = LoggedIn();
  ASSERT_NE(session, nullptr);
  absl::StatusOr<std::vector<ImapFolder>> folders = session->ListFolders();
  ASSERT_TRUE(folders.ok()) << folders.status();
  std::vector<std::string> names;
  for (const ImapFolder& f : *folders) names.push_back(f.name);
  EXPECT_THAT(names, ::testing::IsSupersetOf({"INBOX", "Sent", "Sent Items", "Entwürfe", "Quote \"me\""}));
  for (const ImapFolder& f : *folders) {
    EXPECT_EQ(f.delimiter, "/");
    if (f.name == "Sent") {
      EXPECT_THAT(f.attributes, ::testing::Contains("\\Sent"));
    }
  }
  absl::StatusOr<ImapFolderStatus> status = session->Status("INBOX");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->messages, 3u);
  EXPECT_EQ(status->unseen, 2u);
  EXPECT_GT(status->uid_validity, 0u);
  EXPECT_EQ(status->uid_next, 4u);
  EXPECT_EQ(session->Status("Entwürfe")->messages, 1u);
  EXPECT_TRUE(session->Logout().ok());
}

TEST_F(ImapE2ETest, OauthbearerOverStarttls) {
  std::unique_ptr<ImapSession> session = LoggedIn(SaslMechanism::kOauthbearer, /*starttls=*/true);
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->Status("Quote \"me\"")->messages, 1u);
}

TEST_F(ImapE2ETest, ARejectedTokenIsUnauthenticatedWithBothMechanisms) {
  for (SaslMechanism mechanism : {SaslMechanism::kXoauth2, SaslMechanism::kOauthbearer}) {
    absl::StatusOr<std::unique_ptr<ImapSession>> session = ImapSession::Open(Server(false));
    ASSERT_TRUE(session.ok());
    absl::Status auth = (*session)->Authenticate("alice", Secret::CopyFrom("not-a-token"), mechanism);
    EXPECT_EQ(auth.code(), absl::StatusCode::kUnauthenticated) << auth;
    EXPECT_THAT(std::string(auth.message()), Not(HasSubstr("not-a-token")));
  }
}

TEST_F(ImapE2ETest, ARevokedTokenIsRefusedAndAFreshOneWorks) {
  Secret token = TokenFor("alice");
  idp_->RevokeAccessTokens("alice");
  auto session = ImapSession::Open(Server(false));
  ASSERT_TRUE(session.ok());
  EXPECT_EQ((*session)->Authenticate("alice", token, SaslMechanism::kXoauth2).code(),
            absl::StatusCode::kUnauthenticated);
  auto again = ImapSession::Open(Server(false));
  EXPECT_TRUE((*again)->Authenticate("alice", TokenFor("alice"), SaslMechanism::kXoauth2).ok());
}

TEST_F(ImapE2ETest, SearchFindsTheRightMessagesWithDecodedEnvelopes) {
  std::unique_ptr<ImapSession> session = LoggedIn();
  ASSERT_NE(session, nullptr);
  absl::StatusOr<ImapSelected> inbox = session->Examine("INBOX");
  ASSERT_TRUE(inbox.ok()) << inbox.status();
  EXPECT_EQ(inbox->exists, 3u);
  ImapSearchBuilder unseen;
  unseen.Unseen();
  absl::StatusOr<std::vector<uint32_t>> uids = session->UidSearch(unseen);
  ASSERT_TRUE(uids.ok()) << uids.status();
  ASSERT_EQ(uids->size(), 2u);
  absl::StatusOr<std::vector<ImapMessageSummary>> summaries = session->FetchSummaries(*uids);
  ASSERT_TRUE(summaries.ok()) << summaries.status();
  std::vector<std::string> subjects, names;
  for (const ImapMessageSummary& m : *summaries) {
    subjects.push_back(m.envelope.subject);
    names.push_back(m.envelope.from.empty() ? "" : m.envelope.from[0].name);
    EXPECT_THAT(m.flags, ::testing::Not(::testing::Contains("\\Seen")));
    EXPECT_GT(m.size, 100u);
    EXPECT_FALSE(m.internal_date.empty());
  }
  EXPECT_THAT(subjects, ::testing::UnorderedElementsAre("Grüße", "Grüße aus Köln (8-bit)"));
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("Jürgen", "Carol"));

  ImapSearchBuilder by_subject;
  ASSERT_TRUE(by_subject.Subject("quarterly").ok());
  absl::StatusOr<std::vector<uint32_t>> quarterly = session->UidSearch(by_subject);
  ASSERT_TRUE(quarterly.ok()) << quarterly.status();
  ASSERT_EQ(quarterly->size(), 1u);
  EXPECT_EQ(session->FetchSummaries(*quarterly)->at(0).envelope.from[0].address, "bob@example.com");
  ImapSearchBuilder utf8;
  ASSERT_TRUE(utf8.Subject("Köln").ok());
  ASSERT_TRUE(utf8.From("carol").ok());
  absl::StatusOr<std::vector<uint32_t>> koeln = session->UidSearch(utf8);
  ASSERT_TRUE(koeln.ok()) << koeln.status();
  EXPECT_EQ(koeln->size(), 1u);
}

TEST_F(ImapE2ETest, FetchedBytesAreTheSeededBytesAndFetchingDoesNotMarkRead) {
  std::unique_ptr<ImapSession> session = LoggedIn();
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->Examine("INBOX").ok());
  ImapSearchBuilder all;
  std::vector<uint32_t> uids = *session->UidSearch(all);
  ASSERT_EQ(uids.size(), 3u);
  std::set<std::string> fetched;
  for (uint32_t uid : uids) {
    std::string body;
    size_t chunks = 0;
    absl::StatusOr<uint64_t> n = session->FetchSection(uid, "", 64, [&](absl::string_view chunk) {
      EXPECT_LE(chunk.size(), 64u);
      body.append(chunk.data(), chunk.size());
      ++chunks;
      return absl::OkStatus();
    });
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, body.size());
    EXPECT_GT(chunks, 1u);
    fetched.insert(body);
  }
  std::set<std::string> expected;
  for (const auto& m : *seeded_) {
    if (m.folder == "INBOX") expected.insert(m.rfc822);
  }
  EXPECT_EQ(fetched, expected);
  ImapSearchBuilder unseen;
  unseen.Unseen();
  EXPECT_EQ(session->UidSearch(unseen)->size(), 2u) << "BODY.PEEK must not set \\Seen";
  std::string header;
  ASSERT_TRUE(session->FetchSection(uids[0], "HEADER", 1 << 16, [&](absl::string_view c) {
    header.append(c.data(), c.size());
    return absl::OkStatus();
  }).ok());
  EXPECT_TRUE(absl::EndsWith(header, "\r\n\r\n"));
  EXPECT_EQ(session->FetchSection(999999, "", 1024, [](absl::string_view) { return absl::OkStatus(); }).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ImapE2ETest, BadFoldersAreRefusedAtTheRightPlace) {
  std::unique_ptr<ImapSession> session = LoggedIn();
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->Examine("No Such Folder").status().code(), absl::StatusCode::kNotFound);
  absl::Status crlf = session->Examine("INBOX\r\nt99 DELETE INBOX").status();
  EXPECT_EQ(crlf.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(crlf.message(), "folder: must not contain CR, LF or NUL");
  EXPECT_THAT(dovecot_->Log(), Not(HasSubstr("DELETE")));
  EXPECT_TRUE(session->Noop().ok()) << "the session stays usable";
}

TEST_F(ImapE2ETest, AnUntrustedCertificateFailsTheHandshake) {
  ImapServer s = Server(false);
  s.ca_file = tls_->certificate;  // the identity provider's, not the IMAP server's
  absl::Status status = ImapSession::Open(s).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("certificate"));
  ImapServer wrong_name = Server(false);
  wrong_name.host = "localhost.localdomain";
  EXPECT_FALSE(ImapSession::Open(wrong_name).ok());
}

}  // namespace
}  // namespace tokenbroker
