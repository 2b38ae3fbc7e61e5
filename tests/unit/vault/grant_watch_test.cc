#include "service/vault/grant_watch.h"

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/in_memory_credential_store.h"
#include "tests/support/credentials.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::shared_ptr<const Keyring> Ring() {
  return std::make_shared<const Keyring>(
      *Keyring::Parse("active: k1\nkeys:\n  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "test"));
}

Grant Delegated(const std::string& id) {
  Grant g;
  g.id = id;
  g.app = "a";
  g.mailbox = id + "@contoso.com";
  g.kind = GrantKind::kDelegated;
  return g;
}

// "user: active -> needs_reconsent", "new: created active", "new: deleted".
std::string Line(const GrantStateChange& c) {
  std::string line = c.grant_id + ": ";
  if (!c.grant.has_value()) return line + "deleted";
  if (!c.previous.has_value()) return line + "created " + std::string(GrantStateName(c.grant->state));
  return line + std::string(GrantStateName(*c.previous)) + " -> " + std::string(GrantStateName(c.grant->state));
}

class GrantWatchTest : public ::testing::Test {
 protected:
  GrantWatchTest()
      : sealer_(Ring()),
        vault_(store_, sealer_, clock_),
        logger_(LogLevel::kInfo, [this](absl::string_view line) { log_.emplace_back(line); }),
        watch_(vault_, clock_, logger_) {
    std::vector<CredentialInput> credentials;
    credentials.push_back(testing::ClientSecretCredential("s", "1", clock_.Now() + absl::Hours(24 * 300)));
    App app;
    app.id = "a";
    app.provider = Provider::kMicrosoft;
    app.tenant = "contoso.onmicrosoft.com";
    app.client_id = "11111111-2222-3333-4444-555555555555";
    EXPECT_TRUE(vault_.CreateApp(app, std::move(credentials)).ok());
    vault_.OnGrantChanged([this](absl::string_view id, ChangeOrigin origin) { watch_.Notice(id, origin); });
  }

  void Listen(const GrantStateChange& c) {
    absl::MutexLock lock(&mu_);
    changes_.push_back(c);
  }
  // Waits until the watcher heard `n` changes (the watch coalesces changes
  // made faster than its worker reads them, so a test waits between them).
  void WaitForChanges(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return changes_.size() >= n; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30))) << "heard " << changes_.size();
  }
  // Every change the watcher heard, after the watch finished its work.
  std::vector<std::string> Heard() {
    watch_.Stop();
    absl::MutexLock lock(&mu_);
    std::vector<std::string> lines;
    for (const GrantStateChange& c : changes_) lines.push_back(Line(c));
    return lines;
  }
  // Log lines at warning level.
  std::vector<std::string> Warnings() const {
    std::vector<std::string> warnings;
    for (const std::string& line : log_) {
      if (absl::StrContains(line, "\"level\":\"warn\"")) warnings.push_back(line);
    }
    return warnings;
  }

  FakeClock clock_{absl::Now()};
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  std::vector<std::string> log_;
  Logger logger_;
  absl::Mutex mu_;
  std::vector<GrantStateChange> changes_ ABSL_GUARDED_BY(mu_);
  GrantWatch watch_;
};

TEST_F(GrantWatchTest, StateChangesAreHeardWithTheirPreviousStateAndWhatToDo) {
  ASSERT_TRUE(vault_.ImportGrant(Delegated("user"), Secret::CopyFrom("0.rt")).ok());
  watch_.Start();  // reads "user" as active
  watch_.Subscribe([this](const GrantStateChange& c) { Listen(c); });

  ASSERT_TRUE(vault_.ImportGrant(Delegated("new"), Secret::CopyFrom("0.rt-new")).ok());
  WaitForChanges(1);
  ProviderError expired{"invalid_grant", 700082, "the refresh token expired (unused for too long); consent again",
                        clock_.Now()};
  ASSERT_TRUE(vault_.ApplyGrantEvent("user", GrantEvent::kRefreshTokenRefused, expired).ok());
  WaitForChanges(2);
  // Labels or the same state again are no state change.
  ASSERT_TRUE(vault_.ApplyGrantEvent("user", GrantEvent::kRefreshTokenRefused, expired, {.notify = true}).ok());
  ASSERT_TRUE(vault_.ImportGrant(Delegated("user"), Secret::CopyFrom("0.rt-again"), /*replace=*/true).ok());
  WaitForChanges(3);
  ASSERT_TRUE(vault_.DeleteGrant("new").ok());

  EXPECT_THAT(Heard(), ::testing::ElementsAre("new: created active", "user: active -> needs_reconsent",
                                              "user: needs_reconsent -> active", "new: deleted"));
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(changes_.size(), 4u);
  const GrantStateChange& stuck = changes_[1];
  EXPECT_EQ(stuck.grant->last_error.provider_code, 700082);
  EXPECT_THAT(stuck.action, HasSubstr("have the user consent with `tokenbrokerctl consent begin user --app a "
                                      "--mailbox user@contoso.com`"));
  EXPECT_TRUE(stuck.grant->sealed_refresh_token.empty()) << "watchers never get a sealed secret";
  EXPECT_EQ(changes_[2].action, "");
  EXPECT_EQ(changes_[3].app, "a") << "a deleted grant keeps its app for filtering";

  // This replica made both changes: a warning when the grant stopped getting
  // tokens (why and what to do) and one when it got them again.
  std::vector<std::string> warnings = Warnings();
  ASSERT_EQ(warnings.size(), 2u) << absl::StrJoin(log_, "");
  EXPECT_THAT(warnings[0], HasSubstr("grant \\\"user\\\" gets no tokens until someone acts: the refresh token "
                                     "expired"));
  EXPECT_THAT(warnings[0], HasSubstr("tokenbrokerctl consent begin user"));
  EXPECT_THAT(warnings[0], HasSubstr("\"previous_state\":\"active\""));
  EXPECT_THAT(warnings[1], HasSubstr("grant \\\"user\\\" is active again"));
  for (const std::string& line : log_) EXPECT_THAT(line, Not(HasSubstr("0.rt")));
}

TEST_F(GrantWatchTest, AnotherReplicasChangesAreHeardButNotLoggedHere) {
  ASSERT_TRUE(vault_.ImportGrant(Delegated("user"), Secret::CopyFrom("0.rt")).ok());
  ASSERT_TRUE(vault_.ImportGrant(Delegated("gone"), Secret::CopyFrom("0.rt")).ok());
  watch_.Start();
  watch_.Subscribe([this](const GrantStateChange& c) { Listen(c); });
  // Another replica writes the store and publishes "grant:user"; then its
  // change feed drops (notice "*") while it deletes "gone".
  Grant user = *store_.GetGrant("user");
  user.state = GrantState::kAppCredentialInvalid;
  ASSERT_TRUE(store_.UpdateGrant(user).ok());
  vault_.ApplyRemoteChange("grant:user");
  WaitForChanges(1);
  ASSERT_TRUE(store_.DeleteGrant("gone").ok());
  vault_.ApplyRemoteChange("*");

  EXPECT_THAT(Heard(), ::testing::ElementsAre("user: active -> app_credential_invalid", "gone: deleted"));
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(changes_.size(), 2u);
  EXPECT_THAT(changes_[0].action, HasSubstr("tokenbrokerctl app add-credential a"));
  EXPECT_THAT(Warnings(), ::testing::IsEmpty()) << "the replica that made the change logs it";
}

// More grants than one page of the store: every state is read at Start and
// counted (what /metrics reports), and a change to a grant on a later page is
// told with its previous state.
TEST_F(GrantWatchTest, ManyGrantsAreReadInPagesAndCounted) {
  for (int i = 0; i < 2500; ++i) {
    Grant g = Delegated(absl::StrCat("g", 10000 + i));
    g.kind = GrantKind::kAppOnly;
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }
  ASSERT_TRUE(vault_.SetGrantEnabled("g12400", false).ok());
  EXPECT_EQ(watch_.GrantCounts(), std::nullopt) << "not known before Start";
  watch_.Start();
  std::map<GrantState, size_t> counts = *watch_.GrantCounts();
  EXPECT_EQ(counts[GrantState::kActive], 2499u);
  EXPECT_EQ(counts[GrantState::kDisabled], 1u);
  watch_.Subscribe([this](const GrantStateChange& c) { Listen(c); });
  ASSERT_TRUE(vault_.SetGrantEnabled("g12499", false).ok());
  ASSERT_TRUE(vault_.DeleteGrant("g12400").ok());
  EXPECT_THAT(Heard(), ::testing::ElementsAre("g12499: active -> disabled", "g12400: deleted"));
  counts = *watch_.GrantCounts();
  EXPECT_EQ(counts[GrantState::kActive], 2498u);
  EXPECT_EQ(counts[GrantState::kDisabled], 1u);
}

TEST_F(GrantWatchTest, AnUnsubscribedWatcherHearsNothingMore) {
  watch_.Start();
  const uint64_t id = watch_.Subscribe([this](const GrantStateChange& c) { Listen(c); });
  ASSERT_TRUE(vault_.ImportGrant(Delegated("one"), Secret::CopyFrom("0.rt")).ok());
  // Unsubscribe waits for a call in progress; a change queued before it may
  // or may not be heard, none after it is.
  watch_.Unsubscribe(id);
  size_t heard = 0;
  {
    absl::MutexLock lock(&mu_);
    heard = changes_.size();
  }
  ASSERT_TRUE(vault_.ImportGrant(Delegated("two"), Secret::CopyFrom("0.rt")).ok());
  EXPECT_EQ(Heard().size(), heard);
  EXPECT_EQ(watch_.watchers(), 0u);
}

}  // namespace
}  // namespace tokenbroker
