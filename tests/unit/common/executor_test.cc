#include "service/common/executor.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

TEST(ExecutorTest, StopRunsEverySubmittedTaskInOrderOnOneWorker) {
  std::vector<int> ran;
  {
    Executor executor(1, 100);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(executor.Submit([&ran, i] { ran.push_back(i); }));
    executor.Stop();
    EXPECT_FALSE(executor.Submit([] {})) << "a stopped executor takes no more work";
  }
  ASSERT_EQ(ran.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ran[i], i);
}

TEST(ExecutorTest, RefusesWorkBeyondMaxPendingUntilATaskFinishes) {
  absl::Mutex mu;
  bool release = false;
  std::atomic<int> done{0};
  Executor executor(1, 2);
  auto blocked = [&] {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&release));
    ++done;
  };
  ASSERT_TRUE(executor.Submit(blocked));
  ASSERT_TRUE(executor.Submit(blocked));
  EXPECT_FALSE(executor.Submit(blocked));
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  executor.Stop();
  EXPECT_EQ(done, 2);
}

TEST(ExecutorTest, OneTaskAtATimeRunsOnTheWorkerThatWentIdleLast) {
  // Its stack and caches are the warmest: a caller making one call after
  // another is served by one worker, not by each worker in turn.
  Executor executor(4, 100);
  executor.AwaitIdle();
  std::set<std::thread::id> ran_on;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(executor.Submit([&ran_on] { ran_on.insert(std::this_thread::get_id()); }));
    executor.AwaitIdle();
  }
  EXPECT_EQ(ran_on.size(), 1u);
}

TEST(ExecutorTest, TasksSubmittedTogetherRunOnSeveralWorkers) {
  absl::Mutex mu;
  int started = 0;
  std::set<std::thread::id> ran_on;
  Executor executor(3, 100);
  // Each task waits until all three have started: they can only finish if
  // three workers run them at once.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(executor.Submit([&] {
      absl::MutexLock lock(&mu);
      ++started;
      ran_on.insert(std::this_thread::get_id());
      mu.Await(absl::Condition(
          +[](int* n) { return *n == 3; }, &started));
    }));
  }
  executor.AwaitIdle();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(ran_on.size(), 3u);
}

TEST(ExecutorTest, AwaitIdleReturnsOnceStopped) {
  Executor executor(2, 10);
  executor.Stop();
  executor.AwaitIdle();
  EXPECT_FALSE(executor.Submit([] {}));
}

}  // namespace
}  // namespace tokenbroker
