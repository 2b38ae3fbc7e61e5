// RefreshScheduler: refreshes tokens in the background so that callers find
// them in the cache. Each pass refreshes (a) every cached token whose
// refresh time (expiry - slack - jitter, see TokenManagerOptions) has come and
// (b) every active delegated grant whose refresh token has not been used for
// keepalive_after, well before Microsoft's 90-day inactivity limit kills it
// (looked for every keepalive_scan, a page of grants at a time).
// At most max_concurrent refreshes run at once. RunOnce() is the whole pass,
// so tests drive it with a fake clock; Start() runs it every interval on a
// thread. With several replicas, each grant's background refreshes fall to
// one of them first (SchedulerOptions::owns). Thread-safe.
#ifndef TOKENBROKER_SERVICE_TOKENS_REFRESH_SCHEDULER_H_
#define TOKENBROKER_SERVICE_TOKENS_REFRESH_SCHEDULER_H_

#include <memory>

#include "service/common/periodic_task.h"
#include "service/tokens/token_manager.h"

namespace tokenbroker {

struct SchedulerOptions {
  // One pass a second: the refreshes due come a second's worth at a time,
  // spread as their jittered refresh times are (a pass over 100,000 cached
  // grants takes a few milliseconds).
  absl::Duration interval = absl::Seconds(1);
  int max_concurrent = 8;
  // Zero disables keep-alive refreshes.
  absl::Duration keepalive_after = absl::Hours(24 * 30);
  // How often the active grants are looked through for keep-alives.
  absl::Duration keepalive_scan = absl::Hours(1);
  // Several replicas: whether this replica is the one that refreshes `grant`
  // in the background (ReplicaMembership::Owns). The others do it
  // takeover_after later, when it has not been done by then (its owner died);
  // the grant's refresh lease makes sure it is done once either way.
  std::function<bool(absl::string_view grant)> owns;
  absl::Duration takeover_after = absl::ZeroDuration();
};

class RefreshScheduler {
 public:
  RefreshScheduler(TokenManager& tokens, Vault& vault, const Clock& clock, Logger& logger, SchedulerOptions options)
      : tokens_(tokens), vault_(vault), clock_(clock), logger_(logger), options_(options) {}
  ~RefreshScheduler() { Stop(); }

  struct Report {
    int ahead_of_expiry = 0;
    int keepalive = 0;
    int failed = 0;
  };
  Report RunOnce();

  void Start();
  void Stop();

 private:
  TokenManager& tokens_;
  Vault& vault_;
  const Clock& clock_;
  Logger& logger_;
  const SchedulerOptions options_;
  static constexpr size_t kKeepalivePage = 1000;
  absl::Mutex scan_mu_;
  absl::Time next_keepalive_scan_ ABSL_GUARDED_BY(scan_mu_) = absl::InfinitePast();
  std::unique_ptr<PeriodicTask> task_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_REFRESH_SCHEDULER_H_
