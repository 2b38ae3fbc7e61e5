#include "service/common/executor.h"

#include <algorithm>

namespace tokenbroker {

Executor::Executor(int threads, size_t max_pending)
    : threads_(static_cast<size_t>(std::max(1, threads))), max_pending_(max_pending) {
  for (size_t i = 0; i < threads_; ++i) workers_.emplace_back([this] { Work(); });
}

Executor::~Executor() { Stop(); }

bool Executor::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || pending_ >= max_pending_) return false;
  ++pending_;
  queue_.push_back(std::move(task));
  if (!idle_.empty()) {
    Idle* worker = idle_.back();
    idle_.pop_back();
    worker->woken = true;
    worker->cv.Signal();
  }
  return true;
}

void Executor::Work() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) {
        Idle self;
        idle_.push_back(&self);
        while (!self.woken) self.cv.Wait(&mu_);
      }
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
    absl::MutexLock lock(&mu_);
    --pending_;
  }
}

void Executor::AwaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Executor* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
        return e->stopping_ || (e->pending_ == 0 && e->idle_.size() == e->threads_);
      },
      this));
}

void Executor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (Idle* worker : idle_) {
      worker->woken = true;
      worker->cv.Signal();
    }
    idle_.clear();
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

}  // namespace tokenbroker
