// PeriodicTask: runs `body` on a thread of its own, again and again, waiting
// between runs, until stopped; the one helper for background loops. The wait
// is a fixed interval, or what a function says before each wait (a device
// flow's next poll, say). Wake() runs the body at once (after a run in
// progress); Stop() wakes the thread at once (no wait for the interval to
// pass) and returns when the body has finished.
#ifndef TOKENBROKER_SERVICE_COMMON_PERIODIC_TASK_H_
#define TOKENBROKER_SERVICE_COMMON_PERIODIC_TASK_H_

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tokenbroker {

class PeriodicTask {
 public:
  PeriodicTask(absl::Duration interval, std::function<void()> body)
      : next_wait_([interval] { return interval; }), body_(std::move(body)) {}
  // `next_wait` is asked before each wait, on the task's thread, without any
  // lock of the task held (it may take the caller's own locks).
  PeriodicTask(std::function<absl::Duration()> next_wait, std::function<void()> body)
      : next_wait_(std::move(next_wait)), body_(std::move(body)) {}
  ~PeriodicTask() { Stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // The first run is one wait after Start().
  void Start() {
    thread_ = std::thread([this] {
      while (true) {
        const absl::Duration wait = next_wait_();
        {
          absl::MutexLock lock(&mu_);
          auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
          mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
          if (stopping_) return;
          woken_ = false;
        }
        body_();
      }
    });
  }

  // Runs the body as soon as the thread is free (a wake before Start, or
  // during a run, is kept). Callers may hold their own locks.
  void Wake() {
    absl::MutexLock lock(&mu_);
    woken_ = true;
  }

  void Stop() {
    if (!thread_.joinable()) return;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

 private:
  const std::function<absl::Duration()> next_wait_;
  const std::function<void()> body_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_PERIODIC_TASK_H_
