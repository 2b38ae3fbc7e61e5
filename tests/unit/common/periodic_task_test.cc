// PeriodicTask: Wake runs the body without waiting out the interval, the wait
// function is asked before each wait, and Stop returns at once however long
// the wait. No test waits for the wall clock: the waits are hours long.
#include "service/common/periodic_task.h"

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

TEST(PeriodicTaskTest, WakeRunsTheBodyAtOnceAndStopDoesNotWaitOutTheInterval) {
  absl::Mutex mu;
  int runs = 0;
  PeriodicTask task(absl::Hours(1), [&] {
    absl::MutexLock lock(&mu);
    ++runs;
  });
  task.Wake();  // before Start: kept
  task.Start();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n >= 1; }, &runs));
  }
  task.Wake();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n >= 2; }, &runs));
  }
  task.Stop();  // returns although the next run is an hour away
  absl::MutexLock lock(&mu);
  EXPECT_EQ(runs, 2);
}

TEST(PeriodicTaskTest, TheWaitFunctionIsAskedBeforeEachWait) {
  std::atomic<int> asked{0};
  absl::Mutex mu;
  int runs = 0;
  // No wait for the first three runs, then hours.
  PeriodicTask task([&] { return ++asked <= 3 ? absl::ZeroDuration() : absl::Hours(5); },
                    [&] {
                      absl::MutexLock lock(&mu);
                      ++runs;
                    });
  task.Start();
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* n) { return *n >= 3; }, &runs));
  }
  task.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(asked.load(), 4);
}

}  // namespace
}  // namespace tokenbroker
