#include "service/audit/audit_trail.h"

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/in_memory_credential_store.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The in-memory store, with audit writes that fail while `down`.
class FlakyStore final : public InMemoryCredentialStore {
 public:
  absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) override {
    if (down) return absl::UnavailableError("store down");
    return InMemoryCredentialStore::AppendAuditEvents(events);
  }
  std::atomic<bool> down{false};
};

AuditEvent Event(const std::string& caller, const std::string& result = "OK") {
  AuditEvent e;
  e.caller = caller;
  e.action = "token.get";
  e.grant = "g";
  e.result = result;
  e.request_id = "r-" + caller;
  return e;
}

std::vector<std::string> Callers(CredentialStore& store) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<AuditEvent>> events = store.ListAuditEvents(AuditFilter{});
  for (const AuditEvent& e : *events) out.push_back(e.caller);
  return out;
}

// Records an OK event of caller "a" and a refused one of "b" through a trail
// with `options`, writes them out, and returns what the trail logged.
std::string RecordTwo(FlakyStore& store, const FakeClock& clock, AuditTrailOptions options = {}) {
  std::vector<std::string> lines;
  absl::Mutex mu;
  Logger logger(LogLevel::kInfo, [&](absl::string_view line) {
    absl::MutexLock lock(&mu);
    lines.emplace_back(line);
  });
  AuditTrail trail(store, logger, clock, std::move(options));
  trail.Start();
  trail.Record(Event("a"));
  trail.Record(Event("b", "PERMISSION_DENIED"));
  EXPECT_TRUE(trail.Flush());
  trail.Stop();
  absl::MutexLock lock(&mu);
  std::string all;
  for (const std::string& l : lines) all += l;
  return all;
}

TEST(AuditTrailTest, EventsReachTheStoreAndTheLogInOrder) {
  FlakyStore store;
  FakeClock clock;
  const std::string all = RecordTwo(store, clock);
  EXPECT_THAT(Callers(store), ::testing::ElementsAre("b", "a"));  // newest first
  EXPECT_EQ(store.ListAuditEvents(AuditFilter{})->front().time, clock.Now());
  EXPECT_THAT(all, HasSubstr("\"msg\":\"audit\""));
  EXPECT_THAT(all, HasSubstr("\"caller\":\"b\""));
  EXPECT_THAT(all, HasSubstr("\"result\":\"PERMISSION_DENIED\""));
  // By default only failures are logged: a line per successful call would
  // flood the log (the store has them all).
  EXPECT_THAT(all, Not(HasSubstr("\"caller\":\"a\"")));
}

TEST(AuditTrailTest, TheLogGetsEveryEventOrNoneWhenAsked) {
  for (auto mode : {AuditTrailOptions::LogEvents::kAll, AuditTrailOptions::LogEvents::kNone}) {
    FlakyStore store;
    FakeClock clock;
    AuditTrailOptions options;
    options.log_events = mode;
    const std::string all = RecordTwo(store, clock, options);
    EXPECT_THAT(Callers(store), ::testing::ElementsAre("b", "a"));
    const bool every = mode == AuditTrailOptions::LogEvents::kAll;
    EXPECT_EQ(absl::StrContains(all, "\"caller\":\"a\""), every);
    EXPECT_EQ(absl::StrContains(all, "\"caller\":\"b\""), every);
  }
}

TEST(AuditTrailTest, AStoreOutageDelaysEventsButLosesNone) {
  FlakyStore store;
  Logger logger(LogLevel::kError, [](absl::string_view) {});
  FakeClock clock;
  AuditTrailOptions options;
  options.retry_interval = absl::Milliseconds(10);
  std::atomic<int> failures{0};
  options.on_write = [&](bool ok) {
    if (!ok) ++failures;
  };
  AuditTrail trail(store, logger, clock, options);
  trail.Start();
  store.down = true;
  for (int i = 0; i < 100; ++i) trail.Record(Event(absl::StrCat("c", i)));
  EXPECT_FALSE(trail.Flush(absl::Milliseconds(100)));
  EXPECT_GT(failures.load(), 0);
  EXPECT_TRUE(Callers(store).empty());
  store.down = false;
  ASSERT_TRUE(trail.Flush(absl::Seconds(10)));
  std::vector<std::string> callers = Callers(store);
  ASSERT_EQ(callers.size(), 100u);
  EXPECT_EQ(callers.front(), "c99");
  EXPECT_EQ(callers.back(), "c0");
}

TEST(AuditTrailTest, BeyondTheLimitEventsAreDroppedAndCounted) {
  FlakyStore store;
  Logger logger(LogLevel::kError, [](absl::string_view) {});
  FakeClock clock;
  AuditTrailOptions options;
  options.max_pending = 10;
  std::atomic<int> dropped{0};
  options.on_dropped = [&] { ++dropped; };
  AuditTrail trail(store, logger, clock, options);  // not started: nothing is written
  for (int i = 0; i < 15; ++i) trail.Record(Event("d"));
  EXPECT_EQ(dropped.load(), 5);
  trail.Start();
  ASSERT_TRUE(trail.Flush());
  EXPECT_EQ(Callers(store).size(), 10u);
}

TEST(AuditTrailTest, EventsOlderThanTheRetentionArePruned) {
  FlakyStore store;
  FakeClock clock;
  AuditEvent old = Event("old");
  old.time = clock.Now() - absl::Hours(24 * 91);
  AuditEvent recent = Event("recent");
  recent.time = clock.Now() - absl::Hours(24);
  ASSERT_TRUE(store.AppendAuditEvents({old, recent}).ok());
  Logger logger(LogLevel::kError, [](absl::string_view) {});
  AuditTrail trail(store, logger, clock);  // 90 days by default
  trail.Start();
  trail.Record(Event("new"));
  ASSERT_TRUE(trail.Flush());
  EXPECT_THAT(Callers(store), ::testing::ElementsAre("new", "recent"));
}

}  // namespace
}  // namespace tokenbroker

namespace tokenbroker {
namespace {

TEST(AuditTrailCacheHitsTest, CoalescedIntoOneEventPerCallerAndGrantOrOneEach) {
  for (bool coalesce : {true, false}) {
    InMemoryCredentialStore store;
    Logger logger(LogLevel::kError, [](absl::string_view) {});
    FakeClock clock;
    AuditTrailOptions options;
    options.coalesce_cache_hits = coalesce;
    AuditTrail trail(store, logger, clock, options);
    trail.Start();
    for (int i = 0; i < 5; ++i) {
      trail.RecordCacheHit("svc-a", "token.get", "TokenService/GetAccessToken", "g1", "req-" + std::to_string(i));
    }
    trail.RecordCacheHit("svc-b", "token.get", "TokenService/GetAccessToken", "g1", "req-b");
    ASSERT_TRUE(trail.Flush());
    absl::StatusOr<std::vector<AuditEvent>> events = store.ListAuditEvents(AuditFilter{});
    ASSERT_TRUE(events.ok());
    if (coalesce) {
      ASSERT_EQ(events->size(), 2u);
      std::map<std::string, AuditEvent> by_caller;
      for (const AuditEvent& e : *events) by_caller[e.caller] = e;
      EXPECT_EQ(by_caller["svc-a"].detail, "cache hits: 5");
      EXPECT_EQ(by_caller["svc-a"].request_id, "req-0");
      EXPECT_EQ(by_caller["svc-a"].result, "OK");
      EXPECT_EQ(by_caller["svc-b"].detail, "cache hits: 1");
    } else {
      ASSERT_EQ(events->size(), 6u);
      EXPECT_EQ(events->back().request_id, "req-0");
      EXPECT_EQ(events->back().detail, "cached");
    }
  }
}

// Hits counted on many threads while the writer keeps taking batches: each
// is in exactly one written event's count.
TEST(AuditTrailCacheHitsTest, HitsFromManyThreadsAreEachCountedOnceAcrossBatches) {
  InMemoryCredentialStore store;
  Logger logger(LogLevel::kError, [](absl::string_view) {});
  FakeClock clock;
  AuditTrailOptions options;
  options.batch_delay = absl::ZeroDuration();  // a batch whenever there is something
  AuditTrail trail(store, logger, clock, options);
  trail.Start();
  constexpr int kThreads = 4, kHitsEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&trail, t] {
      for (int i = 0; i < kHitsEach; ++i) {
        trail.RecordCacheHit(t % 2 == 0 ? "svc-a" : "svc-b", "token.get", "TokenService/GetAccessToken", "g1",
                             "req");
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(trail.Flush());
  absl::StatusOr<std::vector<AuditEvent>> events = store.ListAuditEvents(AuditFilter{.limit = 100000});
  ASSERT_TRUE(events.ok());
  std::map<std::string, int64_t> hits;
  for (const AuditEvent& e : *events) {
    int64_t n = 0;
    ASSERT_TRUE(absl::StartsWith(e.detail, "cache hits: ")) << e.detail;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripPrefix(e.detail, "cache hits: "), &n)) << e.detail;
    EXPECT_GE(n, 1);
    hits[e.caller] += n;
  }
  EXPECT_EQ(hits["svc-a"], kThreads / 2 * kHitsEach);
  EXPECT_EQ(hits["svc-b"], kThreads / 2 * kHitsEach);
}

}  // namespace
}  // namespace tokenbroker
