// PeriodicTask: runs `body` every `interval` on a thread of its own until
// stopped; Stop() wakes it at once (no wait for the interval to pass) and
// returns when the body has finished. The one helper for background loops.
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
      : interval_(interval), body_(std::move(body)) {}
  ~PeriodicTask() { Stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // The first run is one interval after Start().
  void Start() {
    thread_ = std::thread([this] {
      while (true) {
        {
          absl::MutexLock lock(&mu_);
          if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
        }
        body_();
      }
    });
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
  const absl::Duration interval_;
  const std::function<void()> body_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_PERIODIC_TASK_H_
