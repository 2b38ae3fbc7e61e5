#include "service/tokens/token_manager.h"

#include <algorithm>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/tokens/app_credentials.h"
#include "service/tokens/replica_membership.h"

namespace tokenbroker {
namespace {

TokenMinterOptions MinterOptions(const TokenManagerOptions& options) {
  TokenMinterOptions minting;
  minting.initial_backoff = options.initial_backoff;
  minting.max_backoff = options.max_backoff;
  minting.on_refresh = options.on_refresh;
  minting.replicas = options.replicas;
  minting.max_concurrent_refreshes = options.max_concurrent_refreshes;
  minting.pacing = options.pacing;
  return minting;
}

}  // namespace

TokenManager::TokenManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock,
                           Logger& logger, TokenManagerOptions options)
    : clock_(clock),
      options_(std::move(options)),
      minter_(vault, std::move(providers), clock, logger, MinterOptions(options_)) {}

void TokenManager::SharedTokenStored(absl::string_view) { minter_.SharedTokenStored(); }

AccessToken TokenManager::Copy(const AccessToken& t) {
  return AccessToken{t.token.Clone(), t.token_type, t.expire_time, t.mailbox, t.scopes, t.issue_time};
}

std::shared_ptr<TokenManager::Entry> TokenManager::EntryFor(absl::string_view grant_id) {
  {
    // The common case, a grant seen before: a shared lock only.
    absl::ReaderMutexLock lock(&mu_);
    auto it = entries_.find(grant_id);
    if (it != entries_.end()) return it->second;
  }
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Entry>& entry = entries_[grant_id];
  if (entry == nullptr) entry = std::make_shared<Entry>();
  return entry;
}

void TokenManager::Invalidate(absl::string_view grant_id) {
  std::shared_ptr<Entry> entry = EntryFor(grant_id);
  absl::MutexLock lock(&entry->mu);
  DropRefused(*entry);
}

void TokenManager::DropRefused(Entry& entry) {
  if (!entry.cached.has_value()) return;
  entry.invalidated_expiry = std::max(entry.invalidated_expiry, entry.cached->expire_time);
  entry.cached.reset();
}

absl::Status TokenManager::RefreshRefused(absl::string_view grant_id, const Secret& refused) {
  {
    std::shared_ptr<Entry> entry = EntryFor(grant_id);
    absl::MutexLock lock(&entry->mu);
    if (entry->cached.has_value() && !ConstantTimeEquals(entry->cached->token.Reveal(), refused.Reveal())) {
      return absl::OkStatus();
    }
    DropRefused(*entry);
  }
  // A refresh already running (started by another refused call) is shared.
  return RefreshNow(grant_id);
}

std::map<std::string, absl::Time> TokenManager::CachedExpiries() {
  std::vector<std::pair<std::string, std::shared_ptr<Entry>>> entries;
  {
    absl::ReaderMutexLock lock(&mu_);
    entries.assign(entries_.begin(), entries_.end());
  }
  std::map<std::string, absl::Time> out;
  for (const auto& [id, entry] : entries) {
    absl::MutexLock lock(&entry->mu);
    if (entry->cached.has_value()) out[id] = entry->cached->expire_time;
  }
  return out;
}

void TokenManager::Forget(absl::string_view grant_id) {
  std::vector<std::shared_ptr<Entry>> entries;
  if (grant_id == "*") {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) entries.push_back(entry);
  } else {
    entries.push_back(EntryFor(grant_id));
  }
  for (const std::shared_ptr<Entry>& entry : entries) {
    absl::MutexLock lock(&entry->mu);
    entry->cached.reset();
    entry->refresh_at = absl::InfiniteFuture();
    entry->last_error = absl::OkStatus();
    entry->retry_after = absl::InfinitePast();
    entry->consecutive_failures = 0;
    entry->invalidated_expiry = absl::InfinitePast();
  }
}

absl::Time TokenManager::RefreshAt(absl::string_view grant_id, const AccessToken& token) {
  const absl::Duration lifetime = token.expire_time - token.issue_time;
  const absl::Duration slack = std::max(options_.min_slack, lifetime * options_.slack_fraction);
  const uint64_t h = StableHash(absl::StrCat(grant_id, "/", absl::ToUnixMicros(token.expire_time)));
  const double jitter = static_cast<double>(h % 1000003) / 1000003.0 * options_.jitter_fraction;
  return token.expire_time - slack - slack * jitter;
}

std::vector<std::string> TokenManager::DueForRefresh(
    absl::Time now, const std::function<absl::Duration(absl::string_view)>& delay) {
  std::vector<std::pair<std::string, std::shared_ptr<Entry>>> entries;
  {
    absl::ReaderMutexLock lock(&mu_);
    entries.assign(entries_.begin(), entries_.end());
  }
  std::vector<std::string> due;
  for (const auto& [id, entry] : entries) {
    absl::MutexLock lock(&entry->mu);
    if (!entry->cached.has_value() || entry->refreshing || entry->refresh_at > now || now < entry->retry_after) {
      continue;
    }
    // Only a grant that is due at all asks who goes first.
    if (delay == nullptr || entry->refresh_at + delay(id) <= now) due.push_back(id);
  }
  std::sort(due.begin(), due.end());
  return due;
}

absl::Status TokenManager::RefreshNow(absl::string_view grant_id, absl::Time keepalive_used_before) {
  Need need;
  need.used_before = keepalive_used_before;
  return Fetch(grant_id, need, /*observed=*/false, /*force=*/true).status();
}

absl::Status TokenManager::RefreshIfDue(absl::string_view grant_id, absl::Time keepalive_used_before) {
  if (keepalive_used_before == absl::InfinitePast()) {
    std::shared_ptr<Entry> entry = EntryFor(grant_id);
    absl::MutexLock lock(&entry->mu);
    if (!entry->cached.has_value() || entry->refreshing || entry->refresh_at > clock_.Now()) return absl::OkStatus();
  }
  return RefreshNow(grant_id, keepalive_used_before);
}

bool TokenManager::UseCachedToken(absl::string_view grant_id, absl::Duration min_valid_for,
                                  const std::function<void(const AccessToken&)>& use) {
  Entry* entry;
  {
    // Entries are never removed, so the pointer stays valid without a
    // reference count.
    absl::ReaderMutexLock lock(&mu_);
    auto it = entries_.find(grant_id);
    if (it == entries_.end()) return false;
    entry = it->second.get();
  }
  {
    // Shared: cache hits on one grant from many gRPC threads read it side by
    // side, and `use` copies it straight into the response (no copy of the
    // cached token is taken first).
    absl::ReaderMutexLock lock(&entry->mu);
    if (!entry->cached.has_value() || entry->cached->expire_time - clock_.Now() < min_valid_for) return false;
    use(*entry->cached);
  }
  if (options_.on_token) options_.on_token("cache_hit");
  return true;
}

absl::StatusOr<AccessToken> TokenManager::GetAccessToken(absl::string_view grant_id, absl::Duration min_valid_for) {
  Need need;
  need.min_valid_for = min_valid_for;
  return Fetch(grant_id, need, /*observed=*/true, /*force=*/false);
}

absl::StatusOr<AccessToken> TokenManager::Fetch(absl::string_view grant_id, Need need, bool observed, bool force) {
  auto observe = [this, observed](absl::string_view outcome) {
    if (observed && options_.on_token) options_.on_token(outcome);
  };
  std::shared_ptr<Entry> entry = EntryFor(grant_id);
  entry->mu.Lock();
  // A forced refresh wants a token newer than the one cached; nobody wants
  // the token the mail server refused.
  if (force && entry->cached.has_value()) need.newer_than = entry->cached->expire_time;
  need.newer_than = std::max(need.newer_than, entry->invalidated_expiry);
  // A token that is still valid, or the error that callers get.
  auto stale_or_error = [&]() -> absl::StatusOr<AccessToken> {
    if (entry->cached.has_value() && entry->cached->expire_time > clock_.Now()) {
      AccessToken t = Copy(*entry->cached);
      entry->mu.Unlock();
      observe("stale");
      return t;
    }
    absl::Status error = entry->last_error;
    entry->mu.Unlock();
    observe("error");
    return error;
  };
  while (true) {
    const absl::Time now = clock_.Now();
    if (!force && entry->cached.has_value() && entry->cached->expire_time - now >= need.min_valid_for) {
      AccessToken t = Copy(*entry->cached);
      entry->mu.Unlock();
      observe("cache_hit");
      return t;
    }
    if (entry->refreshing) {
      // Share the refresh that is running.
      std::pair<Entry*, uint64_t> waiting(entry.get(), entry->generation);
      entry->mu.Await(absl::Condition(
          +[](std::pair<Entry*, uint64_t>* w) ABSL_NO_THREAD_SAFETY_ANALYSIS { return w->first->generation != w->second; },
          &waiting));
      if (!entry->last_error.ok()) return stale_or_error();
      if (entry->cached.has_value()) {
        AccessToken t = Copy(*entry->cached);
        entry->mu.Unlock();
        observe("refreshed");
        return t;
      }
      continue;
    }
    if (now < entry->retry_after && !entry->last_error.ok()) {
      // Backing off. A caller with no valid token probes now and then
      // instead of waiting out the whole back-off.
      const bool starving = !entry->cached.has_value() || entry->cached->expire_time <= now;
      const bool may_probe =
          starving && now >= entry->probe_after && now - entry->last_attempt >= options_.probe_interval;
      if (!may_probe) return stale_or_error();
    }
    entry->refreshing = true;
    entry->last_attempt = now;
    const int failures = entry->consecutive_failures;
    entry->mu.Unlock();

    RetryAfter retry_after;
    absl::StatusOr<AccessToken> result = minter_.Mint(grant_id, need, &retry_after, failures);
    const absl::Time refresh_at = result.ok() ? RefreshAt(grant_id, *result) : absl::InfiniteFuture();

    entry->mu.Lock();
    entry->refreshing = false;
    ++entry->generation;
    if (result.ok()) {
      entry->cached = Copy(*result);
      entry->refresh_at = refresh_at;
      entry->last_error = absl::OkStatus();
      entry->consecutive_failures = 0;
      entry->retry_after = absl::InfinitePast();
      entry->mu.Unlock();
      observe("refreshed");
      return result;
    }
    entry->last_error = result.status();
    if (retry_after.backoff != absl::InfinitePast()) {
      // May pass: back off, keep the cached token until it expires.
      ++entry->consecutive_failures;
      entry->retry_after = retry_after.backoff;
      entry->probe_after = retry_after.probe_after;
    } else {
      // The grant cannot get tokens any more: drop what was cached.
      entry->cached.reset();
      entry->retry_after = absl::InfinitePast();
      entry->probe_after = absl::InfiniteFuture();
    }
    return stale_or_error();
  }
}

}  // namespace tokenbroker
