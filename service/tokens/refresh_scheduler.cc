#include "service/tokens/refresh_scheduler.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

namespace tokenbroker {

RefreshScheduler::Report RefreshScheduler::RunOnce() {
  Report report;
  const absl::Time now = clock_.Now();
  // How much later than its owner this replica steps in for a grant.
  auto delay = [this](absl::string_view grant) {
    return options_.owns == nullptr || options_.owns(grant) ? absl::ZeroDuration() : options_.takeover_after;
  };
  std::vector<std::string> due = tokens_.DueForRefresh(now, delay);
  report.ahead_of_expiry = static_cast<int>(due.size());
  std::set<std::string> keepalive;
  bool scan = false;
  {
    // Refresh tokens live for weeks: looking every keepalive_scan is plenty,
    // and a page at a time keeps a large fleet's scan small in memory.
    absl::MutexLock lock(&scan_mu_);
    scan = options_.keepalive_after > absl::ZeroDuration() && now >= next_keepalive_scan_;
    if (scan) next_keepalive_scan_ = now + options_.keepalive_scan;
  }
  if (scan) {
    std::set<std::string> already(due.begin(), due.end());
    GrantFilter page{"", GrantState::kActive, "", kKeepalivePage};
    while (true) {
      absl::StatusOr<std::vector<Grant>> grants = vault_.ListGrants(page);
      if (!grants.ok()) {
        logger_.Warn("could not list grants for keep-alive refreshes; trying again next pass",
                     {{"error", grants.status()}});
        absl::MutexLock lock(&scan_mu_);
        next_keepalive_scan_ = now;
        break;
      }
      for (const Grant& g : *grants) {
        if (g.kind != GrantKind::kDelegated || already.count(g.id)) continue;
        const absl::Time used = RefreshTokenUsedTime(g);
        if (used != absl::InfinitePast() && now - used >= options_.keepalive_after + delay(g.id)) {
          due.push_back(g.id);
          keepalive.insert(g.id);
          ++report.keepalive;
        }
      }
      if (grants->size() < kKeepalivePage) break;
      page.after_id = grants->back().id;
    }
  }
  if (due.empty()) return report;
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  auto worker = [&] {
    for (size_t i = next++; i < due.size(); i = next++) {
      // A keep-alive another replica did since this pass read the grant does.
      absl::Status s = tokens_.RefreshIfDue(
          due[i], keepalive.count(due[i]) ? now - options_.keepalive_after : absl::InfinitePast());
      if (!s.ok()) {
        ++failed;
        logger_.Warn("background refresh failed", {{"grant", due[i]}, {"error", s}});
      }
    }
  };
  const int threads = std::max(1, std::min<int>(options_.max_concurrent, static_cast<int>(due.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  report.failed = failed;
  logger_.Info("background refresh pass", {{"ahead_of_expiry", report.ahead_of_expiry},
                                            {"keepalive", report.keepalive},
                                            {"failed", report.failed}});
  return report;
}

void RefreshScheduler::Start() {
  task_ = std::make_unique<PeriodicTask>(options_.interval, [this] { RunOnce(); });
  task_->Start();
}

void RefreshScheduler::Stop() {
  if (task_ != nullptr) task_->Stop();
}

}  // namespace tokenbroker
