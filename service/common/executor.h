// Executor: a fixed pool of threads that runs submitted tasks in order of
// submission. Used to keep blocking work (identity-provider requests, IMAP)
// off gRPC's callback threads. A task goes to the worker that went idle
// last, whose stack and caches are the warmest (with one task at a time,
// the same worker runs them all). Thread-safe.
#ifndef TOKENBROKER_SERVICE_COMMON_EXECUTOR_H_
#define TOKENBROKER_SERVICE_COMMON_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tokenbroker {

class Executor {
 public:
  // `threads` workers; at most `max_pending` tasks submitted and not yet
  // finished (running or waiting for a worker).
  Executor(int threads, size_t max_pending);
  // Stop().
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // False (and the task is not run) when max_pending tasks are pending or the
  // executor is stopping.
  bool Submit(std::function<void()> task);
  // Returns once no task is waiting or running and every worker waits for
  // one (at once when stopping).
  void AwaitIdle();
  // Runs every task already submitted, then joins the workers.
  void Stop();

 private:
  // A worker waiting for a task: Submit or Stop sets `woken` and signals it.
  struct Idle {
    absl::CondVar cv;
    bool woken = false;
  };

  void Work();

  const size_t threads_;
  const size_t max_pending_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The idle workers, the one that went idle last at the back.
  std::vector<Idle*> idle_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_EXECUTOR_H_
