// MailService.WatchMailbox end to end: tokenbrokerd keeps a real Dovecot's
// folders in IMAP IDLE; mail is delivered with doveadm while callers watch,
// Dovecot's IMAP processes are killed mid-watch, UIDVALIDITY is changed,
// and a hundred callers watch ten mailboxes.
#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "client/broker_client.h"
#include "service/crypto/random.h"
#include "tests/support/mail_test_env.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;

constexpr char kSecret[] = "watch-e2e-Client-S3cret";
constexpr int kMailboxes = 10;
constexpr uint32_t kFlood = 3000;

std::string Message(const std::string& subject) {
  return absl::StrCat("From: Bob <bob@example.com>\r\nTo: alice@contoso.com\r\nSubject: ", subject,
                      "\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <", RandomHex(8),
                      "@test>\r\n\r\nHello.\r\n");
}

std::string User(int i) { return absl::StrCat("user", i, "@contoso.com"); }

// One caller's watch, read on the test's thread.
struct Watch {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::MailboxEvent>> reader;
  uint32_t uid_validity = 0;  // from the initial metadata

  v1::MailboxEvent Next() {
    v1::MailboxEvent event;
    if (!reader->Read(&event)) {
      grpc::Status status = reader->Finish();
      ADD_FAILURE() << "the watch ended: " << status.error_code() << " " << status.error_message();
    }
    return event;
  }
};

class WatchE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env_ = new testing::MailTestEnv(kSecret);
    ASSERT_TRUE(env_->StartServers());
    idp_ = &env_->idp();
    dovecot_ = &env_->dovecot();
    daemon_ = &env_->daemon();
    std::vector<testing::SeedMessage> seed;
    for (int i = 1; i <= 5; ++i) seed.push_back({"Backlog", Message(absl::StrCat("Old ", i)), true});
    for (uint32_t i = 1; i <= kFlood; ++i) seed.push_back({"Flood", Message(absl::StrCat("Flood ", i)), true});
    seed.push_back({"Resync", Message("Before"), true});
    seed.push_back({"Burst", Message("Before the burst"), true});
    ASSERT_TRUE(dovecot_->Seed("alice@contoso.com", seed).ok());
    for (int i = 0; i < kMailboxes; ++i) {
      ASSERT_TRUE(dovecot_->Seed(User(i), {{"INBOX", Message("Welcome"), true}}).ok());
    }
    // IDLE issued again every 2 s, so that every test also crosses renewals.
    // Debug logs: the tests wait for the watch's own account of a renewal or
    // a new login.
    ASSERT_TRUE(env_->StartDaemon("  max_connections_per_mailbox: 4\n  watch_queue: 100\n  idle_renew: 2s\n", "log:\n  level: debug\n"));
    env_->ImportGrant("alice", "alice@contoso.com");
    for (int i = 0; i < kMailboxes; ++i) env_->ImportGrant(absl::StrCat("user", i), User(i));
  }

  static void TearDownTestSuite() {
    if (daemon_ != nullptr && daemon_->process != nullptr) {
      CommandResult audit = Ctl({"--output", "json", "audit", "list", "--limit", "1000"});
      EXPECT_EQ(daemon_->Stop(), 0);
      const std::string log = daemon_->process->Stderr();
      for (const std::string& text : {log, audit.out}) {
        EXPECT_FALSE(absl::StrContains(text, kSecret));
        EXPECT_FALSE(absl::StrContains(text, "0.rt-"));
      }
    }
    delete env_;
  }

  static CommandResult Ctl(const std::vector<std::string>& args) { return env_->Ctl(args); }
  static CommandResult MustCtl(const std::vector<std::string>& args) { return env_->MustCtl(args); }
  static std::string Metric(const std::string& prefix) { return env_->Metric(prefix); }
  static double MetricValue(const std::string& series) { return env_->MetricValue(series); }

  // Opens a watch and waits until it is live (its initial metadata).
  Watch Open(const std::string& grant, const std::string& folder, uint32_t since_uid = 0, uint32_t uid_validity = 0) {
    Watch w;
    ClientOptions options;
    options.target = daemon_->grpc_address;
    if (client_ == nullptr) client_ = *BrokerClient::Create(options);
    // Long enough for any test here, short enough that a missing event fails
    // the test instead of hanging it.
    w.context = client_->NewContext(absl::Seconds(120));
    v1::WatchMailboxRequest request;
    request.set_grant(grant);
    request.set_folder(folder);
    request.set_since_uid(since_uid);
    request.set_uid_validity(uid_validity);
    w.reader = client_->mail().WatchMailbox(w.context.get(), request);
    w.reader->WaitForInitialMetadata();
    const auto& headers = w.context->GetServerInitialMetadata();
    auto it = headers.find("uid-validity");
    if (it != headers.end()) {
      (void)absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &w.uid_validity);
    }
    return w;
  }

  void Deliver(const std::string& user, const std::string& folder, const std::string& subject) {
    ASSERT_TRUE(dovecot_->Deliver(user, folder, Message(subject)).ok());
  }

  std::unique_ptr<BrokerClient> client_;

  static testing::MailTestEnv* env_;
  static testing::FakeMicrosoft* idp_;
  static testing::DovecotServer* dovecot_;
  static testing::RunningDaemon* daemon_;
};

testing::MailTestEnv* WatchE2ETest::env_;
testing::FakeMicrosoft* WatchE2ETest::idp_;
testing::DovecotServer* WatchE2ETest::dovecot_;
testing::RunningDaemon* WatchE2ETest::daemon_;

// First: no other watch holds a connection yet.
TEST_F(WatchE2ETest, AHundredWatchersOnTenMailboxesShareTenConnectionsWithFlatMemory) {
  std::vector<Watch> watches;
  for (int i = 0; i < 100; ++i) watches.push_back(Open(absl::StrCat("user", i % kMailboxes), "INBOX"));
  EXPECT_EQ(MetricValue("tokenbroker_mailbox_watchers"), 100);
  EXPECT_EQ(MetricValue("tokenbroker_imap_connections{state=\"in_use\"}"), kMailboxes);
  auto rss_kb = [] {
    const std::string status = testing::ReadFile(absl::StrCat("/proc/", daemon_->process->pid(), "/status"));
    for (absl::string_view line : absl::StrSplit(status, '\n')) {
      if (absl::ConsumePrefix(&line, "VmRSS:")) {
        int64_t kb = 0;
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(absl::StripAsciiWhitespace(line), "kB")),
                               &kb);
        return kb;
      }
    }
    return int64_t{0};
  };
  int64_t after_first = 0;
  for (int round = 1; round <= 5; ++round) {
    for (int m = 0; m < kMailboxes; ++m) Deliver(User(m), "INBOX", absl::StrCat("Round ", round, " for ", m));
    for (int i = 0; i < 100; ++i) {
      v1::MailboxEvent e = watches[i].Next();
      ASSERT_TRUE(e.has_new_message()) << e.DebugString();
      EXPECT_EQ(e.new_message().subject(), absl::StrCat("Round ", round, " for ", i % kMailboxes));
    }
    if (round == 1) after_first = rss_kb();
  }
  const int64_t after_last = rss_kb();
  // Four more rounds of 100 events leave memory where it was (AddressSanitizer's
  // 8 MB quarantine and allocator caches aside).
  EXPECT_LT(after_last - after_first, 16 * 1024) << after_first << " kB -> " << after_last << " kB";
  for (Watch& w : watches) w.context->TryCancel();
}

TEST_F(WatchE2ETest, DeliveredMailArrivesInOrderThenExpungesAndFlagChanges) {
  Watch w = Open("alice", "INBOX");
  ASSERT_NE(w.uid_validity, 0u);
  for (int i = 1; i <= 3; ++i) Deliver("alice@contoso.com", "INBOX", absl::StrCat("Arrived ", i));
  uint32_t previous = 0;
  std::vector<uint32_t> uids;
  for (int i = 1; i <= 3; ++i) {
    v1::MailboxEvent e = w.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    EXPECT_EQ(e.new_message().subject(), absl::StrCat("Arrived ", i));
    EXPECT_EQ(e.new_message().from(0).email(), "bob@example.com");
    EXPECT_GT(e.new_message().uid(), previous);
    EXPECT_EQ(e.uid_validity(), w.uid_validity);
    previous = e.new_message().uid();
    uids.push_back(previous);
  }
  ASSERT_TRUE(dovecot_
                  ->Doveadm({"flags", "add", "-u", "alice@contoso.com", "\\Flagged", "mailbox", "INBOX", "uid",
                             std::to_string(uids[0])})
                  .ok());
  v1::MailboxEvent flags = w.Next();
  ASSERT_TRUE(flags.has_flags_changed()) << flags.DebugString();
  EXPECT_EQ(flags.flags_changed().uid(), uids[0]);
  EXPECT_THAT(absl::StrJoin(flags.flags_changed().flags(), " "), HasSubstr("\\Flagged"));
  ASSERT_TRUE(dovecot_
                  ->Doveadm({"expunge", "-u", "alice@contoso.com", "mailbox", "INBOX", "uid", std::to_string(uids[1])})
                  .ok());
  v1::MailboxEvent gone = w.Next();
  ASSERT_TRUE(gone.has_expunged_uid()) << gone.DebugString();
  EXPECT_EQ(gone.expunged_uid(), uids[1]);
  EXPECT_THAT(Metric("tokenbroker_mailbox_watch_events_total{kind=\"new\"}"), Not(HasSubstr("} 0")));
  EXPECT_EQ(MetricValue("tokenbroker_mailbox_watchers"), 1);
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, ImapProcessKilledMidWatchMissesNoMessageAndRepeatsNone) {
  Watch w = Open("alice", "INBOX");
  Deliver("alice@contoso.com", "INBOX", "Before the kill");
  v1::MailboxEvent first = w.Next();
  ASSERT_TRUE(first.has_new_message());
  const double reconnects = MetricValue("tokenbroker_mailbox_watch_reconnects_total{reason=\"connection\"}");
  // Killed mid-IDLE (no BYE), and mail delivered while the broker is away.
  ASSERT_TRUE(dovecot_->KillImapProcesses().ok());
  for (int i = 1; i <= 3; ++i) Deliver("alice@contoso.com", "INBOX", absl::StrCat("During the gap ", i));
  Deliver("alice@contoso.com", "INBOX", "After the gap");
  std::vector<std::string> subjects;
  std::set<uint32_t> uids = {first.new_message().uid()};
  uint32_t previous = first.new_message().uid();
  for (int i = 0; i < 4; ++i) {
    v1::MailboxEvent e = w.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    EXPECT_GT(e.new_message().uid(), previous) << "in order, none repeated";
    previous = e.new_message().uid();
    EXPECT_TRUE(uids.insert(previous).second);
    subjects.push_back(e.new_message().subject());
  }
  EXPECT_THAT(subjects, ::testing::ElementsAre("During the gap 1", "During the gap 2", "During the gap 3",
                                               "After the gap"));
  EXPECT_EQ(MetricValue("tokenbroker_mailbox_watch_reconnects_total{reason=\"connection\"}"), reconnects + 1);
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, MailArrivesAfterIdleWasIssuedAgain) {
  Watch w = Open("user8", "INBOX");
  ASSERT_TRUE(daemon_->process
                  ->WaitForStderrLine(
                      [](const std::string& l) {
                        return absl::StrContains(l, "a mailbox watch issues IDLE again") &&
                               absl::StrContains(l, "\"grant\":\"user8\"");
                      },
                      absl::Seconds(60))
                  .has_value());
  Deliver(User(8), "INBOX", "After the renewal");
  EXPECT_EQ(w.Next().new_message().subject(), "After the renewal");
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, TheWholeServerKilledAndRestartedMissesNothing) {
  Watch w = Open("alice", "INBOX");
  Deliver("alice@contoso.com", "INBOX", "Before the crash");
  EXPECT_EQ(w.Next().new_message().subject(), "Before the crash");
  // Dovecot dies (SIGKILL, every process); mail arrives while it is down;
  // it starts again. The broker retries with backoff meanwhile.
  // (Without the server, doveadm cannot look the user up: an MTA writes the
  // Maildir files instead.)
  absl::Status restarted = dovecot_->Restart([] {
    return dovecot_->Seed("alice@contoso.com", {{"INBOX", Message("While down 1"), false},
                                                {"INBOX", Message("While down 2"), false}});
  });
  ASSERT_TRUE(restarted.ok()) << restarted;
  Deliver("alice@contoso.com", "INBOX", "After the restart");
  // In UID order, which is the order the restarted server gave them UIDs.
  uint32_t previous = 0;
  std::set<std::string> subjects;
  for (int i = 0; i < 3; ++i) {
    v1::MailboxEvent e = w.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    EXPECT_GT(e.new_message().uid(), previous);
    previous = e.new_message().uid();
    subjects.insert(e.new_message().subject());
  }
  EXPECT_THAT(subjects, ::testing::ElementsAre("After the restart", "While down 1", "While down 2"));
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, SinceUidSendsTheBacklogFirstAndAStaleUidValidityAResync) {
  Watch w = Open("alice", "Backlog", 2);
  for (int i = 3; i <= 5; ++i) {
    v1::MailboxEvent e = w.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    EXPECT_EQ(e.new_message().uid(), static_cast<uint32_t>(i));
    EXPECT_EQ(e.new_message().subject(), absl::StrCat("Old ", i));
  }
  Deliver("alice@contoso.com", "Backlog", "New after the backlog");
  v1::MailboxEvent live = w.Next();
  ASSERT_TRUE(live.has_new_message());
  EXPECT_EQ(live.new_message().uid(), 6u);
  w.context->TryCancel();

  // The same folder watched with a UIDVALIDITY it no longer has: a resync,
  // no backlog.
  Watch stale = Open("alice", "Backlog", 2, w.uid_validity + 1);
  v1::MailboxEvent resync = stale.Next();
  EXPECT_TRUE(resync.has_resync()) << resync.DebugString();
  EXPECT_EQ(resync.uid_validity(), w.uid_validity);
  Deliver("alice@contoso.com", "Backlog", "Next");
  v1::MailboxEvent next = stale.Next();
  ASSERT_TRUE(next.has_new_message()) << next.DebugString();
  EXPECT_EQ(next.new_message().uid(), 7u);
  stale.context->TryCancel();
}

TEST_F(WatchE2ETest, AChangedUidValidityIsAResync) {
  Watch w = Open("alice", "Resync");
  ASSERT_TRUE(dovecot_
                  ->Doveadm({"mailbox", "update", "-u", "alice@contoso.com", "--uid-validity",
                             std::to_string(w.uid_validity + 1000), "Resync"})
                  .ok());
  // Dovecot notices the change at its next look at the folder: a delivery.
  // The message delivered with it is part of the folder the caller reads
  // again after the resync, not an event.
  Deliver("alice@contoso.com", "Resync", "With the change");
  // Dovecot finds its index reset, may report that as a flag change, and
  // drops the session ("IMAP session state is inconsistent"); the broker
  // logs in again and finds the new UIDVALIDITY.
  v1::MailboxEvent e = w.Next();
  for (int i = 0; i < 3 && e.has_flags_changed(); ++i) e = w.Next();
  ASSERT_TRUE(e.has_resync()) << e.DebugString();
  EXPECT_EQ(e.uid_validity(), w.uid_validity + 1000);
  Deliver("alice@contoso.com", "Resync", "After the resync");
  v1::MailboxEvent next = w.Next();
  ASSERT_TRUE(next.has_new_message()) << next.DebugString();
  EXPECT_EQ(next.uid_validity(), w.uid_validity + 1000);
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, ABacklogOfThousandsComesInOrderAsTheCallerReads) {
  Watch w = Open("alice", "Flood", 1);
  for (uint32_t uid = 2; uid <= kFlood; ++uid) {
    v1::MailboxEvent e = w.Next();
    ASSERT_EQ(e.new_message().uid(), uid);
    ASSERT_EQ(e.new_message().subject(), absl::StrCat("Flood ", uid));
  }
  w.context->TryCancel();
}

TEST_F(WatchE2ETest, ASlowWatcherHoldsUpNeitherMemoryNorTheOthers) {
  // Two watchers of one folder; 2000 messages arrive at once. The slow one
  // reads nothing until the fast one has read them all: the broker queues
  // at most 100 events for it (mail.watch_queue here), sends it no more new
  // messages meanwhile, and then sends the rest, in order, as it reads.
  Watch slow = Open("alice", "Burst");
  Watch fast = Open("alice", "Burst");
  constexpr uint32_t kBurst = 2000;
  std::vector<testing::SeedMessage> burst;
  for (uint32_t i = 1; i <= kBurst; ++i) burst.push_back({"Burst", Message(absl::StrCat("Burst ", i)), false});
  ASSERT_TRUE(dovecot_->Seed("alice@contoso.com", burst).ok());
  std::vector<uint32_t> fast_uids, slow_uids;
  for (uint32_t i = 0; i < kBurst; ++i) {
    v1::MailboxEvent e = fast.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    fast_uids.push_back(e.new_message().uid());
  }
  for (uint32_t i = 0; i < kBurst; ++i) {
    v1::MailboxEvent e = slow.Next();
    ASSERT_TRUE(e.has_new_message()) << e.DebugString();
    slow_uids.push_back(e.new_message().uid());
  }
  EXPECT_EQ(slow_uids, fast_uids);
  EXPECT_TRUE(absl::StrContains(daemon_->process->Stderr(), "a mailbox watcher fell behind"));
  EXPECT_TRUE(std::is_sorted(slow_uids.begin(), slow_uids.end()));
  EXPECT_EQ(std::set<uint32_t>(slow_uids.begin(), slow_uids.end()).size(), kBurst) << "none repeated";
  slow.context->TryCancel();
  fast.context->TryCancel();
}

TEST_F(WatchE2ETest, ADisabledGrantEndsItsWatch) {
  Watch w = Open("user3", "INBOX");
  MustCtl({"grant", "disable", "user3"});
  v1::MailboxEvent e;
  EXPECT_FALSE(w.reader->Read(&e));
  grpc::Status status = w.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("grant enable user3"));
  MustCtl({"grant", "enable", "user3"});
}

TEST_F(WatchE2ETest, BadRequestsGetTheRightCodes) {
  ClientOptions options;
  options.target = daemon_->grpc_address;
  std::unique_ptr<BrokerClient> client = *BrokerClient::Create(options);
  auto code = [&](const std::string& grant, const std::string& folder) {
    auto context = client->NewContext(absl::Seconds(30));
    v1::WatchMailboxRequest request;
    request.set_grant(grant);
    request.set_folder(folder);
    auto reader = client->mail().WatchMailbox(context.get(), request);
    v1::MailboxEvent e;
    while (reader->Read(&e)) {
    }
    grpc::Status status = reader->Finish();
    return std::make_pair(status.error_code(), status.error_message());
  };
  EXPECT_EQ(code("alice", "").first, grpc::INVALID_ARGUMENT);
  EXPECT_THAT(code("alice", "").second, HasSubstr("folder"));
  EXPECT_EQ(code("alice", "No\r\nSuch").first, grpc::INVALID_ARGUMENT);
  EXPECT_EQ(code("nobody", "INBOX").first, grpc::NOT_FOUND);
  EXPECT_EQ(code("alice", "Missing folder").first, grpc::NOT_FOUND);
  // A watch without a deadline is refused like every MailService call.
  grpc::ClientContext context;
  v1::WatchMailboxRequest request;
  request.set_grant("alice");
  request.set_folder("INBOX");
  auto reader = client->mail().WatchMailbox(&context, request);
  v1::MailboxEvent e;
  EXPECT_FALSE(reader->Read(&e));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("deadline"));
}

TEST_F(WatchE2ETest, TheCliPrintsOneLinePerEventUntilInterrupted) {
  auto watch = testing::Subprocess::Start(
      {testing::CtlPath(), "--target", daemon_->grpc_address, "mail", "watch", "user7", "INBOX", "--since-uid", "0"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE((*watch)
                  ->WaitForStderrLine([](const std::string& l) { return absl::StrContains(l, "watching INBOX"); },
                                      absl::Seconds(30))
                  .has_value())
      << (*watch)->Stderr();
  Deliver(User(7), "INBOX", "Seen by the CLI");
  const std::string out = (*watch)->WaitForStdout(
      [](const std::string& o) { return absl::StrContains(o, "Seen by the CLI"); }, absl::Seconds(30));
  EXPECT_THAT(out, ::testing::MatchesRegex("new +[0-9]+  .*Bob.*Seen by the CLI *\n"));
  (*watch)->Signal(SIGINT);
  EXPECT_TRUE((*watch)->Wait(absl::Seconds(10)).ok());

  auto json = testing::Subprocess::Start({testing::CtlPath(), "--target", daemon_->grpc_address, "--output", "json",
                                          "mail", "watch", "user7", "INBOX", "--since-uid", "1"});
  ASSERT_TRUE(json.ok());
  const std::string lines = (*json)->WaitForStdout(
      [](const std::string& o) { return absl::StrContains(o, "Seen by the CLI"); }, absl::Seconds(30));
  EXPECT_THAT(lines, HasSubstr("{\"uid_validity\":"));
  EXPECT_THAT(lines, HasSubstr("\"new_message\":{\"uid\":2,"));
  (*json)->Signal(SIGINT);
  EXPECT_TRUE((*json)->Wait(absl::Seconds(10)).ok());
}

// Last: it shortens the lifetime of the tokens the identity provider issues.
TEST_F(WatchE2ETest, TheWatchLogsInAgainBeforeItsTokenExpiresAndMissesNothing) {
  // Tokens for 125 s: the watch gives its connection back 2 minutes before
  // expiry, that is about 5 s after each login.
  idp_->SetExpiresIn(125);
  env_->ImportGrant("renew", User(5));
  Watch w = Open("renew", "INBOX");
  Deliver(User(5), "INBOX", "Before the new login");
  EXPECT_EQ(w.Next().new_message().subject(), "Before the new login");
  ASSERT_TRUE(daemon_->process
                  ->WaitForStderrLine(
                      [](const std::string& l) {
                        return absl::StrContains(l, "a mailbox watch logs in again") &&
                               absl::StrContains(l, "\"grant\":\"renew\"") && absl::StrContains(l, "token");
                      },
                      absl::Seconds(60))
                  .has_value());
  Deliver(User(5), "INBOX", "After the new login");
  EXPECT_EQ(w.Next().new_message().subject(), "After the new login");
  EXPECT_GE(MetricValue("tokenbroker_mailbox_watch_reconnects_total{reason=\"token\"}"), 1);
  idp_->SetExpiresIn(3599);
  w.context->TryCancel();
}

}  // namespace
}  // namespace tokenbroker
