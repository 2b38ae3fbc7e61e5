#include "service/common/executor.h"

#include <algorithm>

namespace tokenbroker {

Executor::Executor(int threads, size_t max_pending) : max_pending_(max_pending) {
  for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { Work(); });
}

Executor::~Executor() { Stop(); }

bool Executor::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || pending_ >= max_pending_) return false;
  ++pending_;
  queue_.push_back(std::move(task));
  return true;
}

void Executor::Work() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Executor::HasWork));
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
    absl::MutexLock lock(&mu_);
    --pending_;
  }
}

void Executor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

}  // namespace tokenbroker
