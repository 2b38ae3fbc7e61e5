#include "service/common/clock.h"

namespace tokenbroker {

SystemClock& SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return *clock;
}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepUntil(absl::Time t) const {
  absl::MutexLock lock(&mu_);
  ++sleeping_;
  auto reached = [this, t]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return now_ >= t; };
  mu_.Await(absl::Condition(&reached));
  --sleeping_;
}

bool FakeClock::AwaitSleepers(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sleeping_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace tokenbroker
