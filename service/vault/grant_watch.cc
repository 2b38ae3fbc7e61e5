#include "service/vault/grant_watch.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "service/store/model.h"

namespace tokenbroker {
namespace {

constexpr size_t kPage = 1000;

// The states in which a grant gets no tokens until someone acts.
bool Stuck(GrantState state) {
  return state == GrantState::kNeedsReconsent || state == GrantState::kAppCredentialInvalid;
}

}  // namespace

GrantWatch::GrantWatch(Vault& vault, const Clock& clock, Logger& logger)
    : vault_(vault), clock_(clock), logger_(logger) {}

GrantWatch::~GrantWatch() { Stop(); }

void GrantWatch::Start() {
  {
    absl::MutexLock lock(&queue_mu_);
    if (started_) return;
    started_ = true;
  }
  // Notices heard while the states are read queue behind the read; every
  // change after Start returns is told.
  absl::Notification read;
  if (worker_.Submit([this, &read] {
        ReadAll(false);
        read.Notify();
      })) {
    read.WaitForNotification();
  }
}

void GrantWatch::Stop() {
  {
    absl::MutexLock lock(&queue_mu_);
    started_ = false;
  }
  worker_.Stop();
}

uint64_t GrantWatch::Subscribe(Watcher watcher) {
  absl::MutexLock lock(&watchers_mu_);
  const uint64_t id = next_watcher_++;
  watchers_.emplace(id, std::move(watcher));
  return id;
}

void GrantWatch::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(id);
}

std::optional<std::map<GrantState, size_t>> GrantWatch::GrantCounts() const {
  absl::MutexLock lock(&known_mu_);
  if (!counted_) return std::nullopt;
  return counts_;
}

size_t GrantWatch::watchers() const {
  absl::MutexLock lock(&watchers_mu_);
  return watchers_.size();
}

void GrantWatch::Notice(absl::string_view grant_id, ChangeOrigin origin) {
  absl::MutexLock lock(&queue_mu_);
  if (!started_) return;
  auto [it, added] = pending_.try_emplace(std::string(grant_id), false);
  if (added) pending_order_.push_back(it->first);
  it->second |= origin == ChangeOrigin::kThisReplica;
  if (drain_queued_) return;
  drain_queued_ = worker_.Submit([this] { Drain(); });
}

void GrantWatch::Drain() {
  std::vector<std::string> order;
  std::map<std::string, bool> pending;
  {
    absl::MutexLock lock(&queue_mu_);
    order.swap(pending_order_);
    pending.swap(pending_);
    drain_queued_ = false;
  }
  // Another replica's change feed reconnected: any grant may have changed.
  if (pending.contains("*")) ReadAll(true);
  for (const std::string& id : order) {
    if (id == "*") continue;
    const bool local = pending[id];
    absl::StatusOr<Grant> grant = vault_.GetGrant(id);
    if (!grant.ok() && !absl::IsNotFound(grant.status())) {
      logger_.Warn("could not read a changed grant; its watchers hear of it on its next change",
                   {{"grant", id}, {"error", grant.status()}});
      continue;
    }
    absl::MutexLock lock(&known_mu_);
    Compare(id, grant.ok() ? std::optional<Grant>(*std::move(grant)) : std::nullopt, local, true);
  }
}

void GrantWatch::ReadAll(bool report) {
  std::set<std::string> seen;
  GrantFilter page;
  page.limit = kPage;
  while (true) {
    absl::StatusOr<std::vector<Grant>> grants = vault_.ListGrants(page);
    if (!grants.ok()) {
      logger_.Warn("could not read the grants' states; changes to grants not read are reported without their "
                   "previous state",
                   {{"error", grants.status()}});
      return;
    }
    if (grants->size() == kPage) page.after_id = grants->back().id;  // before the grants move
    absl::MutexLock lock(&known_mu_);
    for (Grant& g : *grants) {
      seen.insert(g.id);
      const std::string id = g.id;
      Compare(id, std::move(g), false, report);
    }
    if (grants->size() < kPage) break;
  }
  // Grants known before and not listed now were deleted meanwhile.
  absl::MutexLock lock(&known_mu_);
  std::vector<std::string> gone;
  for (const auto& [id, known] : known_) {
    if (!seen.contains(id)) gone.push_back(id);
  }
  for (const std::string& id : gone) Compare(id, std::nullopt, false, report);
  counted_ = true;
}

void GrantWatch::Compare(const std::string& id, const std::optional<Grant>& now, bool local, bool report) {
  auto it = known_.find(id);
  GrantStateChange change;
  change.grant_id = id;
  change.time = clock_.Now();
  if (it != known_.end()) {
    if (now.has_value() && now->state == it->second.state) {
      it->second.labels = now->labels;  // labels may change without the state
      return;
    }
    --counts_[it->second.state];
    change.previous = it->second.state;
    change.app = it->second.app;
    change.labels = it->second.labels;
  }
  if (now.has_value()) {
    change.grant = *now;
    change.grant->sealed_refresh_token.clear();
    change.app = now->app;
    change.labels = now->labels;
    change.action = GrantRemedy(*now);
    known_[id] = Known{now->state, now->app, now->labels};
    ++counts_[now->state];
  } else {
    if (it == known_.end()) return;  // deleted before it was ever read
    known_.erase(it);
  }
  if (report) Report(change, local);
}

void GrantWatch::Report(const GrantStateChange& change, bool local) {
  // Each replica logs the changes it made; every replica tells its watchers.
  if (local) {
    const bool stuck_now = change.grant.has_value() && Stuck(change.grant->state);
    const bool was_stuck = change.previous.has_value() && Stuck(*change.previous);
    const std::string state = change.grant.has_value() ? std::string(GrantStateName(change.grant->state)) : "deleted";
    const std::string previous = change.previous.has_value() ? std::string(GrantStateName(*change.previous)) : "";
    if (stuck_now) {
      logger_.Warn(absl::StrCat("grant \"", change.grant_id, "\" gets no tokens until someone acts: ",
                                change.grant->last_error.message, "; ", change.action),
                   {{"grant", change.grant_id}, {"app", change.app}, {"state", state}, {"previous_state", previous},
                    {"oauth_error", change.grant->last_error.oauth_error},
                    {"provider_code", change.grant->last_error.provider_code}});
    } else if (was_stuck && state == "active") {
      logger_.Warn(absl::StrCat("grant \"", change.grant_id, "\" is active again"),
                   {{"grant", change.grant_id}, {"app", change.app}, {"state", state}, {"previous_state", previous}});
    } else {
      logger_.Info("grant state changed",
                   {{"grant", change.grant_id}, {"app", change.app}, {"state", state}, {"previous_state", previous}});
    }
  }
  absl::MutexLock lock(&watchers_mu_);
  for (const auto& [id, watcher] : watchers_) watcher(change);
}

}  // namespace tokenbroker
