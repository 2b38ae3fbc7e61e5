#include "service/audit/audit_trail.h"

#include <vector>

namespace tokenbroker {

AuditTrail::AuditTrail(CredentialStore& store, Logger& logger, const Clock& clock, AuditTrailOptions options)
    : store_(store), logger_(logger), clock_(clock), options_(std::move(options)) {}

AuditTrail::~AuditTrail() { Stop(); }

void AuditTrail::Start() {
  if (running_) return;
  running_ = true;
  writer_ = std::thread([this] { Run(); });
}

void AuditTrail::Stop(absl::Duration deadline) {
  if (!running_) return;
  Flush(deadline);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
  running_ = false;
  absl::MutexLock lock(&mu_);
  if (!pending_.empty()) {
    logger_.Error("audit events could not be written before shutdown", {{"events", pending_.size()}});
  }
}

void AuditTrail::Record(AuditEvent event) {
  if (event.time == absl::InfinitePast()) event.time = clock_.Now();
  bool dropped = false;
  {
    absl::MutexLock lock(&mu_);
    ++recorded_;
    if (pending_.size() >= options_.max_pending) {
      ++settled_;
      dropped = true;
    } else {
      pending_.push_back(std::move(event));
    }
  }
  if (dropped && options_.on_dropped) options_.on_dropped();
}

bool AuditTrail::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t mark = recorded_;
  auto done = [this, mark]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return settled_ >= mark; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

void AuditTrail::Prune() {
  absl::StatusOr<int64_t> pruned = store_.PruneAuditEvents(clock_.Now() - options_.retention);
  if (!pruned.ok()) {
    logger_.Warn("old audit events could not be pruned", {{"error", pruned.status()}});
  } else if (*pruned > 0) {
    logger_.Info("old audit events pruned", {{"events", *pruned}, {"retention", options_.retention}});
  }
}

void AuditTrail::Run() {
  Prune();
  absl::Time next_prune = clock_.Now() + options_.prune_interval;
  bool store_failing = false;
  while (true) {
    std::vector<AuditEvent> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !pending_.empty(); };
      // After a store failure, wait before trying again rather than spin.
      const absl::Duration wait = store_failing ? options_.retry_interval : absl::Seconds(60);
      if (store_failing) {
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
        mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
      } else {
        mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
      }
      if (stopping_ && (pending_.empty() || store_failing)) return;
      const size_t n = std::min(pending_.size(), options_.max_batch);
      batch.assign(std::make_move_iterator(pending_.begin()), std::make_move_iterator(pending_.begin() + n));
      pending_.erase(pending_.begin(), pending_.begin() + n);
    }
    if (!batch.empty()) {
      absl::Status written = store_.AppendAuditEvents(batch);
      if (options_.on_write) options_.on_write(written.ok());
      if (!written.ok()) {
        if (!store_failing) logger_.Error("audit events cannot be written to the store; retrying", {{"error", written}});
        store_failing = true;
        // Put them back in front, in order.
        absl::MutexLock lock(&mu_);
        pending_.insert(pending_.begin(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
        continue;
      }
      if (store_failing) logger_.Info("audit events are being written to the store again");
      store_failing = false;
      for (const AuditEvent& e : batch) {
        logger_.Info("audit", {{"event_time", e.time},
                               {"caller", e.caller},
                               {"action", e.action},
                               {"method", e.method},
                               {"app", e.app},
                               {"grant", e.grant},
                               {"result", e.result},
                               {"detail", e.detail},
                               {"request_id", e.request_id}});
      }
      absl::MutexLock lock(&mu_);
      settled_ += batch.size();
    }
    if (clock_.Now() >= next_prune) {
      Prune();
      next_prune = clock_.Now() + options_.prune_interval;
    }
  }
}

}  // namespace tokenbroker
