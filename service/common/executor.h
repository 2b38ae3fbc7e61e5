// Executor: a fixed pool of threads that runs submitted tasks in order of
// submission. Used to keep blocking work (identity-provider requests) off
// gRPC's callback threads. Thread-safe.
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
  // Runs every task already submitted, then joins the workers.
  void Stop();

 private:
  void Work();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }

  const size_t max_pending_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_EXECUTOR_H_
