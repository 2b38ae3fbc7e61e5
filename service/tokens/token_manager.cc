#include "service/tokens/token_manager.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/tokens/app_credentials.h"
#include "service/tokens/replica_membership.h"

namespace tokenbroker {
namespace {

// FAILED_PRECONDITION for a grant whose refresh token the provider refused,
// with the commands that fix it.
absl::Status NeedsConsentAgain(const Grant& grant, absl::string_view why) {
  const std::string args = absl::StrCat(grant.id, " --app ", grant.app, " --mailbox ", grant.mailbox);
  return absl::FailedPreconditionError(absl::StrCat("grant \"", grant.id, "\" needs consent again: ", why,
                                                    "; have the user consent with `tokenbrokerctl consent begin ",
                                                    args, "` (or `tokenbrokerctl consent device ", args, "`)"));
}

// OK when the grant may get tokens; otherwise what its callers are told.
absl::Status Usable(const Grant& grant) {
  switch (grant.state) {
    case GrantState::kDisabled:
      return absl::FailedPreconditionError(absl::StrCat("grant \"", grant.id,
                                                        "\" is disabled; enable it with `tokenbrokerctl grant enable ",
                                                        grant.id, "`"));
    case GrantState::kNeedsReconsent:
      return NeedsConsentAgain(grant, grant.last_error.message);
    case GrantState::kPendingConsent:
      return absl::FailedPreconditionError(absl::StrCat("grant \"", grant.id, "\" is waiting for consent"));
    default:
      return absl::OkStatus();
  }
}

}  // namespace

absl::Time RefreshTokenUsedTime(const Grant& grant) {
  return grant.refresh_token_last_used_time != absl::InfinitePast() ? grant.refresh_token_last_used_time
                                                                     : grant.consent_time;
}

TokenManager::TokenManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock,
                           Logger& logger, TokenManagerOptions options)
    : vault_(vault), providers_(std::move(providers)), clock_(clock), logger_(logger), options_(std::move(options)) {}

AccessToken TokenManager::Copy(const AccessToken& t) {
  return AccessToken{t.token.Clone(), t.token_type, t.expire_time, t.mailbox,
                     t.scopes,        t.sasl_xoauth2.Clone(), t.issue_time};
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

void TokenManager::SharedTokenStored(absl::string_view) {
  absl::MutexLock lock(&shared_mu_);
  ++shared_stored_;
}

uint64_t TokenManager::SharedTokensStored() {
  absl::MutexLock lock(&shared_mu_);
  return shared_stored_;
}

void TokenManager::WaitForSharedToken(uint64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&shared_mu_);
  std::pair<uint64_t*, uint64_t> w(&shared_stored_, seen);
  shared_mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::pair<uint64_t*, uint64_t>* w) { return *w->first != w->second; }, &w),
      timeout);
}

absl::Duration TokenManager::Backoff(int failures) {
  absl::Duration d = options_.initial_backoff;
  for (int i = 0; i < failures && d < options_.max_backoff; ++i) d *= 2;
  d = std::min(d, options_.max_backoff);
  absl::MutexLock lock(&bitgen_mu_);
  return d * absl::Uniform(bitgen_, 0.8, 1.2);
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
    absl::MutexLock lock(&entry->mu);
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
    absl::StatusOr<AccessToken> result = Obtain(grant_id, need, &retry_after, failures);
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

absl::Status TokenManager::RecordGrantFailure(const Grant& grant, GrantEvent event, const ProviderFailure& failure,
                                              const RefreshLease* lease) {
  const ProviderError error{failure.oauth_error, failure.provider_code, failure.message, clock_.Now()};
  return vault_.ApplyGrantEvent(grant.id, event, error, {.read = &grant, .lease = lease}).status();
}

absl::StatusOr<AccessToken> TokenManager::Obtain(absl::string_view grant_id, const Need& need,
                                                 RetryAfter* retry_after, int failures) {
  if (options_.replicas.enabled) return ObtainShared(grant_id, need, retry_after, failures);
  ASSIGN_OR_RETURN(Grant grant, vault_.GetGrant(grant_id));
  RETURN_IF_ERROR(Usable(grant));
  return Refresh(std::move(grant), nullptr, retry_after, failures);
}

std::optional<AccessToken> TokenManager::AdoptShared(const Grant& grant, const Need& need) {
  absl::StatusOr<std::optional<SharedAccessToken>> shared = vault_.store().GetSharedAccessToken(grant.id);
  if (!shared.ok() || !shared->has_value()) return std::nullopt;
  const SharedAccessToken& t = **shared;
  if (t.expire_time - clock_.Now() < need.min_valid_for || t.expire_time <= need.newer_than) return std::nullopt;
  if (grant.kind == GrantKind::kDelegated && RefreshTokenUsedTime(grant) < need.used_before) return std::nullopt;
  absl::StatusOr<Secret> token = vault_.OpenAccessToken(grant, t);
  if (!token.ok()) {
    // Sealed for another mailbox (re-consent) or under a key this replica
    // cannot read: not a token to serve.
    logger_.Warn("a shared access token does not open; refreshing instead",
                 {{"grant", grant.id}, {"error", token.status()}});
    return std::nullopt;
  }
  if (options_.replicas.on_adopted) options_.replicas.on_adopted();
  Secret sasl = SaslXoauth2(grant.mailbox, *token);
  return AccessToken{*std::move(token), t.token_type, t.expire_time, grant.mailbox,
                     t.scopes.empty() ? grant.scopes : t.scopes, std::move(sasl), t.issue_time};
}

absl::StatusOr<AccessToken> TokenManager::ObtainShared(absl::string_view grant_id, const Need& need,
                                                       RetryAfter* retry_after, int failures) {
  const ReplicaOptions& replicas = options_.replicas;
  auto observe_lease = [&](absl::string_view outcome) {
    if (replicas.on_lease) replicas.on_lease(outcome);
  };
  bool waiting = false;
  absl::Time give_up = absl::InfiniteFuture();
  std::string holder;
  absl::Cleanup stop_waiting = [&] {
    if (waiting && replicas.on_waiting) replicas.on_waiting(-1);
  };
  while (true) {
    const uint64_t seen = SharedTokensStored();
    ASSIGN_OR_RETURN(Grant grant, vault_.GetGrant(grant_id));
    RETURN_IF_ERROR(Usable(grant));
    if (std::optional<AccessToken> adopted = AdoptShared(grant, need)) return *std::move(adopted);
    absl::StatusOr<RefreshLease> lease = vault_.store().AcquireRefreshLease(grant_id, replicas.replica_id,
                                                                             replicas.lease_ttl);
    if (!lease.ok()) {
      return absl::Status(lease.status().code(), absl::StrCat("taking the refresh lease of grant \"", grant_id,
                                                              "\": ", lease.status().message()));
    }
    if (lease->acquired) {
      observe_lease(lease->took_over ? "took_over" : "acquired");
      bool released = false;
      absl::Cleanup release = [&] {
        if (!released) (void)vault_.store().ReleaseRefreshLease(*lease);
      };
      // Re-read under the lease: another replica may have refreshed between
      // the read above and taking the lease.
      ASSIGN_OR_RETURN(grant, vault_.GetGrant(grant_id));
      RETURN_IF_ERROR(Usable(grant));
      if (std::optional<AccessToken> adopted = AdoptShared(grant, need)) return *std::move(adopted);
      absl::StatusOr<AccessToken> token = Refresh(grant, &*lease, retry_after, failures);
      if (!token.ok()) return token;
      absl::StatusOr<std::string> sealed = vault_.SealAccessToken(grant, token->token);
      absl::Status shared =
          sealed.ok() ? vault_.store().PutSharedAccessToken(
                            {*sealed, token->token_type, token->scopes, token->expire_time, "", 0,
                             token->issue_time},
                            *lease)
                      : sealed.status();
      released = shared.ok();  // storing it released the lease
      if (!shared.ok()) {
        // The token is good; the other replicas will refresh on their own.
        logger_.Warn("a refreshed access token could not be shared with the other replicas",
                     {{"grant", grant.id}, {"error", shared}});
      }
      return token;
    }
    observe_lease("contended");
    const absl::Time now = clock_.Now();
    if (!waiting) {
      waiting = true;
      if (replicas.on_waiting) replicas.on_waiting(+1);
      give_up = now + lease->remaining + replicas.lease_ttl;
    }
    holder = lease->holder;
    if (now >= give_up) {
      return absl::UnavailableError(absl::StrCat("grant \"", grant_id, "\" is being refreshed by replica ", holder,
                                                 ", which has not finished; retry"));
    }
    WaitForSharedToken(seen, std::min(lease->remaining, replicas.wait_poll));
  }
}

absl::StatusOr<AccessToken> TokenManager::Refresh(Grant grant, const RefreshLease* lease, RetryAfter* retry_after,
                                                  int failures) {
  ASSIGN_OR_RETURN(App app, vault_.GetApp(grant.app));
  auto provider = providers_.find(app.provider);
  if (provider == providers_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("app \"", app.id, "\": tokens from ", ProviderName(app.provider),
                                                      " are not available in this version of tokenbrokerd"));
  }
  std::optional<Secret> refresh_token;
  if (grant.kind == GrantKind::kDelegated) {
    ASSIGN_OR_RETURN(refresh_token, vault_.OpenRefreshToken(grant));
  }
  std::optional<IssuedToken> issued;
  const absl::Time requested = clock_.Now();
  ASSIGN_OR_RETURN(
      std::optional<ProviderFailure> failed,
      TryAppCredentials(vault_, clock_, logger_, app,
                        [&](const AppCredential& credential, const Secret& secret) -> std::optional<ProviderFailure> {
                          TokenRequest request{&app, &grant, &credential, &secret,
                                               refresh_token ? &*refresh_token : nullptr};
                          const absl::Time start = clock_.Now();
                          // One limit for background and callers' refreshes.
                          ConcurrencyLimit::Slot slot = provider_requests_.Acquire();
                          TokenReply reply = provider->second->RequestToken(request);
                          if (options_.on_refresh) {
                            options_.on_refresh(app.provider, reply.ok() ? "ok" : FailureKindName(reply.failure.kind),
                                                clock_.Now() - start);
                          }
                          if (!reply.ok()) return reply.failure;
                          issued = std::move(reply.token);
                          return std::nullopt;
                        }));
  const ProviderFailure failure = failed.value_or(ProviderFailure{});
  const absl::Time now = clock_.Now();
  if (issued.has_value()) {
    grant.last_refresh_time = now;
    if (grant.kind == GrantKind::kDelegated) {
      grant.refresh_token_last_used_time = now;
      if (!issued->refresh_token.empty()) {
        // Stored before the access token is handed out: a crash can never lose
        // the newest refresh token.
        absl::StatusOr<Grant> stored = vault_.StoreRefreshToken(grant, issued->refresh_token, lease);
        if (!stored.ok()) {
          return absl::UnavailableError(absl::StrCat("the rotated refresh token of grant \"", grant.id,
                                                     "\" could not be stored (", stored.status().message(),
                                                     "); the previous one stays; retry"));
        }
      } else {
        (void)vault_.RecordRefresh(grant, lease);
      }
    } else {
      (void)vault_.RecordRefresh(grant, lease);  // timestamps only: losing a race is harmless
    }
    Secret sasl = SaslXoauth2(grant.mailbox, issued->access_token);
    AccessToken token{std::move(issued->access_token), issued->token_type, issued->expire_time, grant.mailbox,
                      issued->scopes.empty() ? grant.scopes : issued->scopes, std::move(sasl), requested};
    return token;
  }
  switch (failure.kind) {
    case FailureKind::kNeedsReconsent:
      RecordGrantFailure(grant, GrantEvent::kRefreshTokenRefused, failure, lease).IgnoreError();
      logger_.Warn("grant needs consent again", {{"grant", grant.id}, {"error", failure.message}});
      return NeedsConsentAgain(grant, failure.message);
    case FailureKind::kInvalidClient:
      RecordGrantFailure(grant, GrantEvent::kCredentialsRefused, failure, lease).IgnoreError();
      retry_after->backoff = now + Backoff(failures);
      return absl::FailedPreconditionError(absl::StrCat(
          "every credential of app \"", app.id, "\" was rejected (last: ", failure.message,
          "); add a working one with `tokenbrokerctl app add-credential`"));
    case FailureKind::kAppConfiguration:
      retry_after->backoff = now + Backoff(failures);
      return absl::FailedPreconditionError(absl::StrCat("app \"", app.id, "\": ", failure.message));
    case FailureKind::kTransient:
    case FailureKind::kThrottled: {
      const absl::Duration wait = std::max(failure.retry_after, Backoff(failures));
      retry_after->backoff = now + wait;
      retry_after->probe_after = now + failure.retry_after;
      return absl::UnavailableError(
          absl::StrCat(failure.message, "; retry in ", absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1))), "s"));
    }
  }
  return absl::InternalError("unreachable");
}

}  // namespace tokenbroker
