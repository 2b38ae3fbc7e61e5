// GrantWatch: turns the vault's "grant changed" notices into state changes
// (the state a grant was in, the state it is in now, why, and what to do)
// for whoever watches (AdminService.WatchGrants), and writes each change this
// replica made as a log line: a warning when a grant stops getting tokens
// (needs_reconsent, app_credential_invalid) or gets them again.
//
// It knows every grant's last state: read once, in pages, when it starts,
// then kept by the notices (and read again in full when another replica's
// change feed reconnected). The writer's thread only queues the grant's id;
// one worker reads the changed grants and tells the watchers, in order.
// Changes to one grant made faster than the worker reads them are told as
// one: from the state last told to the state read.
#ifndef TOKENBROKER_SERVICE_VAULT_GRANT_WATCH_H_
#define TOKENBROKER_SERVICE_VAULT_GRANT_WATCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/logging/logger.h"
#include "service/vault/vault.h"

namespace tokenbroker {

// One change of a grant's state as a watcher sees it.
struct GrantStateChange {
  std::string grant_id;
  // The grant as it is now; nullopt when it was deleted.
  std::optional<Grant> grant;
  // The state before; nullopt when this replica did not know the grant
  // (created, or a `current` snapshot).
  std::optional<GrantState> previous;
  // What someone must do about it (empty when nothing).
  std::string action;
  absl::Time time = absl::InfinitePast();
  // Sent because the watcher asked for the grants needing someone now, not
  // because the state just changed.
  bool current = false;
  // The app and labels the grant had (also for a deleted grant), for
  // filtering and policy.
  std::string app;
  std::map<std::string, std::string> labels;
};

class GrantWatch {
 public:
  // Called on the watch's worker, one change at a time, in order. Must be
  // quick and must not call Subscribe or Unsubscribe.
  using Watcher = std::function<void(const GrantStateChange&)>;

  GrantWatch(Vault& vault, const Clock& clock, Logger& logger);
  // Stop().
  ~GrantWatch();
  GrantWatch(const GrantWatch&) = delete;
  GrantWatch& operator=(const GrantWatch&) = delete;

  // Reads every grant's state (on the worker, in pages of 1000; returns when
  // done) and starts hearing the vault's notices: every change after Start
  // returns is told; changes before it are not.
  void Start();
  // Finishes the work queued, then stops; no watcher is called after.
  void Stop();

  // Adds a watcher; returns its id for Unsubscribe.
  uint64_t Subscribe(Watcher watcher);
  // After it returns, the watcher is never called again (waits for a call in
  // progress). Not from inside a watcher.
  void Unsubscribe(uint64_t id);
  size_t watchers() const;

  // How many grants are in each state, as this watch knows them (kept by the
  // notices, so without a store read: what /metrics reports). nullopt until
  // Start has read every grant.
  std::optional<std::map<GrantState, size_t>> GrantCounts() const;

  // The vault's listener: queues `grant_id` ("*" for every grant).
  void Notice(absl::string_view grant_id, ChangeOrigin origin);

 private:
  struct Known {
    GrantState state = GrantState::kActive;
    std::string app;
    std::map<std::string, std::string> labels;
  };
  void ReadAll(bool report);
  void Drain();
  // Compares grant `id` as read now (nullopt: gone) with what was known and
  // reports a change.
  void Compare(const std::string& id, const std::optional<Grant>& now, bool local, bool report)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(known_mu_);
  void Report(const GrantStateChange& change, bool local);

  Vault& vault_;
  const Clock& clock_;
  Logger& logger_;

  absl::Mutex queue_mu_;
  // Grant ids heard and not yet read, in the order first heard, and whether
  // this replica made the change (true wins when both did).
  std::vector<std::string> pending_order_ ABSL_GUARDED_BY(queue_mu_);
  std::map<std::string, bool> pending_ ABSL_GUARDED_BY(queue_mu_);
  bool drain_queued_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool started_ ABSL_GUARDED_BY(queue_mu_) = false;

  // Only the worker writes them; GrantCounts reads.
  mutable absl::Mutex known_mu_;
  std::map<std::string, Known> known_ ABSL_GUARDED_BY(known_mu_);
  std::map<GrantState, size_t> counts_ ABSL_GUARDED_BY(known_mu_);
  bool counted_ ABSL_GUARDED_BY(known_mu_) = false;

  // Held while a watcher runs, so that Unsubscribe waits for it.
  mutable absl::Mutex watchers_mu_;
  std::map<uint64_t, Watcher> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 1;

  // Declared last: stopped (queued reads done) before the rest goes.
  Executor worker_{1, 16};
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_VAULT_GRANT_WATCH_H_
