#include "service/common/executor.h"

#include <atomic>
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

}  // namespace
}  // namespace tokenbroker
