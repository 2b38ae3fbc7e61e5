// ConcurrencyLimit: at most `limit` holders of a slot at once; Acquire waits
// for one. One limit shared by every path that does the same kind of work
// (identity-provider requests: background refreshes and callers' refreshes
// alike), so that the paths cannot add up past it. Thread-safe.
#ifndef TOKENBROKER_SERVICE_COMMON_CONCURRENCY_LIMIT_H_
#define TOKENBROKER_SERVICE_COMMON_CONCURRENCY_LIMIT_H_

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tokenbroker {

class ConcurrencyLimit {
 public:
  explicit ConcurrencyLimit(int limit) : limit_(std::max(1, limit)) {}
  ConcurrencyLimit(const ConcurrencyLimit&) = delete;
  ConcurrencyLimit& operator=(const ConcurrencyLimit&) = delete;

  // Held from Acquire until destroyed.
  class Slot {
   public:
    explicit Slot(ConcurrencyLimit* owner) : owner_(owner) {}
    Slot(Slot&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (owner_ != nullptr) owner_->Release();
    }

   private:
    ConcurrencyLimit* owner_;
  };

  // Waits until fewer than `limit` slots are held, then holds one.
  Slot Acquire() {
    absl::MutexLock lock(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(this, &ConcurrencyLimit::HasRoom));
    --waiting_;
    ++in_use_;
    peak_ = std::max(peak_, in_use_);
    return Slot(this);
  }
  int limit() const { return limit_; }
  // The most slots ever held at once (for tests and benchmarks).
  int peak() {
    absl::MutexLock lock(&mu_);
    return peak_;
  }
  // Waits until `n` callers wait in Acquire; false after `timeout` (tests).
  bool AwaitWaiting(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return waiting_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 private:
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_use_ < limit_; }
  void Release() {
    absl::MutexLock lock(&mu_);
    --in_use_;
  }

  const int limit_;
  absl::Mutex mu_;
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_CONCURRENCY_LIMIT_H_
