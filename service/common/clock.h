// Time as a dependency: logic asks a Clock, so tests move time instead of
// sleeping.
#ifndef TOKENBROKER_SERVICE_COMMON_CLOCK_H_
#define TOKENBROKER_SERVICE_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tokenbroker {

// The source of the current time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Returns once Now() has reached `t`: the wall clock sleeps; a FakeClock
  // waits until a test moves it there.
  virtual void SleepUntil(absl::Time t) const = 0;
};

// The wall clock.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepUntil(absl::Time t) const override { absl::SleepFor(t - absl::Now()); }
  // A process-wide instance.
  static SystemClock& Get();
};

// A clock that only moves when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}
  absl::Time Now() const override;
  void SleepUntil(absl::Time t) const override;
  // Waits until `n` threads are in SleepUntil; false after `timeout` (real
  // time).
  bool AwaitSleepers(int n, absl::Duration timeout) const;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  // Threads in SleepUntil (tests wait for them before moving the clock).
  mutable int sleeping_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_CLOCK_H_
