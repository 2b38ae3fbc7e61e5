// ImapSession::Idle over a scripted server: what the server says while the
// client idles reaches the caller, the IDLE ends when the caller asks, when
// the wait is over or when the server says BYE, and a server without IDLE is
// refused. Changes reported with another command's reply reach the
// unsolicited-response observer.
#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/imap/imap_session.h"
#include "tests/support/in_memory_imap_transport.h"

namespace tokenbroker {
namespace {

using ::testing::ElementsAre;

// Answers each command (by its text after the tag) with a scripted reply;
// "$TAG" in a reply is the command's tag. With nothing to say it reports a
// timed-out wait, as an idle server would.
class ScriptedServer final : public testing::InMemoryImapTransport {
 public:
  ScriptedServer(std::string capabilities, std::vector<std::pair<std::string, std::string>> script,
                 std::vector<std::string>& commands)
      : InMemoryImapTransport(
            absl::StrCat("* OK [CAPABILITY IMAP4rev1", capabilities.empty() ? "" : " ", capabilities, "] ready\r\n")),
        script_(script.begin(), script.end()),
        commands_(commands) {}

  absl::Status Write(absl::string_view data) override {
    std::string line(data.substr(0, data.find("\r\n")));
    std::string tag, command = line;
    if (line != "DONE") {
      tag = line.substr(0, line.find(' '));
      command = line.substr(tag.size() + 1);
      last_tag_ = tag;
    }
    commands_.push_back(command);
    if (script_.empty() || script_.front().first != command) {
      return absl::InternalError(absl::StrCat("unexpected command: ", command));
    }
    std::string reply = script_.front().second;
    script_.pop_front();
    size_t at;
    while ((at = reply.find("$TAG")) != std::string::npos) reply.replace(at, 4, last_tag_);
    pending_ += reply;
    return absl::OkStatus();
  }

  absl::StatusOr<Wait> WaitReadable(absl::Duration, int) override {
    return pending_.empty() ? Wait::kTimedOut : Wait::kReadable;
  }

 private:
  std::deque<std::pair<std::string, std::string>> script_;
  std::vector<std::string>& commands_;
  std::string last_tag_;
};

std::unique_ptr<ImapSession> Open(std::string capabilities, std::vector<std::pair<std::string, std::string>> script,
                                  std::vector<std::string>& commands) {
  auto session = ImapSession::OpenOver(
      std::make_unique<ScriptedServer>(std::move(capabilities), std::move(script), commands), ImapServer{});
  EXPECT_TRUE(session.ok()) << session.status();
  return *std::move(session);
}

std::string Describe(const ImapResponse& r) {
  return absl::StrCat(r.number.value_or(0), " ", r.name.empty() ? r.status : r.name);
}

TEST(ImapIdleTest, UpdatesReachTheCallerWhoEndsTheIdle) {
  std::vector<std::string> commands;
  auto session = Open("IDLE", {{"IDLE", "+ idling\r\n* 4 EXPUNGE\r\n* 7 EXISTS\r\n"},
                               {"DONE", "* 2 FETCH (FLAGS (\\Seen))\r\n$TAG OK IDLE terminated\r\n"}},
                      commands);
  std::vector<std::string> heard;
  absl::StatusOr<ImapSession::IdleEnd> end = session->Idle(absl::Minutes(25), -1, [&](const ImapResponse& r) {
    heard.push_back(Describe(r));
    return r.name == "EXISTS";  // new mail: stop idling to fetch it
  });
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, ImapSession::IdleEnd::kAsked);
  EXPECT_THAT(heard, ElementsAre("4 EXPUNGE", "7 EXISTS", "2 FETCH"));
  EXPECT_THAT(commands, ElementsAre("IDLE", "DONE"));
  EXPECT_TRUE(session->usable());
}

TEST(ImapIdleTest, TheIdleEndsWhenTheWaitIsOver) {
  std::vector<std::string> commands;
  auto session = Open("IDLE", {{"IDLE", "+ idling\r\n* OK Still here\r\n"}, {"DONE", "$TAG OK done\r\n"}}, commands);
  int heard = 0;
  absl::StatusOr<ImapSession::IdleEnd> end = session->Idle(absl::Seconds(1), -1, [&](const ImapResponse&) {
    ++heard;
    return false;
  });
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, ImapSession::IdleEnd::kTimedOut);
  EXPECT_EQ(heard, 1);  // the keep-alive
  EXPECT_THAT(commands, ElementsAre("IDLE", "DONE"));
}

TEST(ImapIdleTest, AByeEndsTheSession) {
  std::vector<std::string> commands;
  auto session = Open("IDLE", {{"IDLE", "+ idling\r\n* BYE Server shutting down\r\n"}}, commands);
  absl::Status status = session->Idle(absl::Minutes(1), -1, [](const ImapResponse&) { return false; }).status();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_THAT(status.message(), ::testing::HasSubstr("BYE"));
  EXPECT_FALSE(session->usable());
}

TEST(ImapIdleTest, AServerWithoutIdleIsRefusedBeforeAnythingIsSent) {
  std::vector<std::string> commands;
  auto session = Open("", {}, commands);
  absl::Status status = session->Idle(absl::Minutes(1), -1, [](const ImapResponse&) { return false; }).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_TRUE(commands.empty());
}

TEST(ImapIdleTest, ChangesReportedWithAnotherCommandReachTheObserver) {
  std::vector<std::string> commands;
  auto session = Open("IDLE", {{"NOOP", "* 3 EXPUNGE\r\n* 9 EXISTS\r\n* 1 RECENT\r\n$TAG OK NOOP done\r\n"}},
                      commands);
  std::vector<std::string> seen;
  session->set_on_unsolicited([&](const ImapResponse& r) { seen.push_back(Describe(r)); });
  EXPECT_TRUE(session->Noop().ok());
  EXPECT_THAT(seen, ElementsAre("3 EXPUNGE", "9 EXISTS"));
}

}  // namespace
}  // namespace tokenbroker
