#include "service/audit/audit_trail.h"

#include <vector>

#include "absl/strings/str_cat.h"

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

void AuditTrail::RecordCacheHit(absl::string_view caller, absl::string_view action, absl::string_view method,
                                absl::string_view grant, absl::string_view request_id) {
  auto event = [&] {
    AuditEvent e;
    e.time = clock_.Now();
    e.caller = std::string(caller);
    e.action = std::string(action);
    e.method = std::string(method);
    e.grant = std::string(grant);
    e.result = "OK";
    e.request_id = std::string(request_id);
    return e;
  };
  if (!options_.coalesce_cache_hits) {
    AuditEvent e = event();
    e.detail = "cached";
    Record(std::move(e));
    return;
  }
  // Reused per thread: no allocation for a key seen before.
  thread_local std::string key;
  key.clear();
  absl::StrAppend(&key, caller, "\n", grant, "\n", method);
  {
    absl::ReaderMutexLock lock(&hits_mu_);
    auto it = cache_hits_.find(key);
    if (it != cache_hits_.end()) {
      it->second->count.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  // The first hit of this key since the last write: one more event.
  bool dropped = false;
  {
    absl::MutexLock lock(&mu_);
    absl::MutexLock hits_lock(&hits_mu_);
    auto it = cache_hits_.find(key);
    if (it == cache_hits_.end()) {
      ++recorded_;
      if (pending_.size() + coalesced_ >= options_.max_pending) {
        ++settled_;
        dropped = true;
      } else {
        it = cache_hits_.emplace(key, std::make_unique<CoalescedHits>(event())).first;
        ++coalesced_;
      }
    }
    if (!dropped) it->second->count.fetch_add(1, std::memory_order_relaxed);
  }
  if (dropped && options_.on_dropped) options_.on_dropped();
}

bool AuditTrail::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t mark = recorded_;
  ++flushing_;
  auto done = [this, mark]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return settled_ >= mark; };
  const bool flushed = mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  --flushing_;
  return flushed;
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
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty() || coalesced_ > 0;
      };
      // After a store failure, wait before trying again rather than spin.
      const absl::Duration wait = store_failing ? options_.retry_interval : absl::Seconds(60);
      if (store_failing) {
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
        mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
      } else if (mu_.AwaitWithTimeout(absl::Condition(&ready), wait)) {
        // Let a batch gather: one wake-up and one transaction for many events
        // rather than one per call.
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || flushing_ > 0 || pending_.size() >= options_.max_batch;
        };
        mu_.AwaitWithTimeout(absl::Condition(&full), options_.batch_delay);
      }
      {
        // Coalesced cache hits join the queue as events now (held exclusive:
        // no hit is being counted).
        absl::MutexLock hits_lock(&hits_mu_);
        for (auto& [key, hits] : cache_hits_) {
          hits->event.detail = absl::StrCat("cache hits: ", hits->count.load(std::memory_order_relaxed));
          pending_.push_back(std::move(hits->event));
        }
        cache_hits_.clear();
        coalesced_ = 0;
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
        if (!store_failing)
          logger_.Error("audit events cannot be written to the store; retrying", {{"error", written}});
        store_failing = true;
        // Put them back in front, in order.
        absl::MutexLock lock(&mu_);
        pending_.insert(pending_.begin(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
        continue;
      }
      if (store_failing) logger_.Info("audit events are being written to the store again");
      store_failing = false;
      if (logger_.Enabled(LogLevel::kInfo) && options_.log_events != AuditTrailOptions::LogEvents::kNone) {
        std::string lines;
        for (const AuditEvent& e : batch) {
          if (options_.log_events == AuditTrailOptions::LogEvents::kFailures && e.result == "OK") continue;
          lines += logger_.Format(LogLevel::kInfo, "audit",
                                  {{"event_time", e.time},
                                   {"caller", e.caller},
                                   {"action", e.action},
                                   {"method", e.method},
                                   {"app", e.app},
                                   {"grant", e.grant},
                                   {"result", e.result},
                                   {"detail", e.detail},
                                   {"request_id", e.request_id}});
        }
        if (!lines.empty()) logger_.WriteLines(lines);
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
