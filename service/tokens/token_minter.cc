#include "service/tokens/token_minter.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/tokens/app_credentials.h"

namespace tokenbroker {
namespace {

// FAILED_PRECONDITION for a grant whose refresh token the provider refused,
// with the commands that fix it.
absl::Status NeedsConsentAgain(const Grant& grant, absl::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat("grant \"", grant.id, "\" needs consent again: ", why, "; ", ConsentAgainCommands(grant)));
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

TokenMinter::TokenMinter(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock,
                         Logger& logger, TokenMinterOptions options)
    : vault_(vault), providers_(std::move(providers)), clock_(clock), logger_(logger), options_(std::move(options)) {}

void TokenMinter::SharedTokenStored() {
  absl::MutexLock lock(&shared_mu_);
  ++shared_stored_;
}

uint64_t TokenMinter::SharedTokensStored() {
  absl::MutexLock lock(&shared_mu_);
  return shared_stored_;
}

void TokenMinter::WaitForSharedToken(uint64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&shared_mu_);
  std::pair<uint64_t*, uint64_t> w(&shared_stored_, seen);
  shared_mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::pair<uint64_t*, uint64_t>* w) { return *w->first != w->second; }, &w),
      timeout);
}

absl::Duration TokenMinter::Backoff(int failures) {
  absl::Duration d = options_.initial_backoff;
  for (int i = 0; i < failures && d < options_.max_backoff; ++i) d *= 2;
  d = std::min(d, options_.max_backoff);
  absl::MutexLock lock(&bitgen_mu_);
  return d * absl::Uniform(bitgen_, 0.8, 1.2);
}

absl::Status TokenMinter::RecordGrantFailure(const Grant& grant, GrantEvent event, const ProviderFailure& failure,
                                              const RefreshLease* lease) {
  const ProviderError error{failure.oauth_error, failure.provider_code, failure.message, clock_.Now()};
  return vault_.ApplyGrantEvent(grant.id, event, error, {.read = &grant, .lease = lease}).status();
}

absl::StatusOr<AccessToken> TokenMinter::Mint(absl::string_view grant_id, const TokenNeed& need,
                                                 RetryAfter* retry_after, int failures) {
  if (options_.replicas.enabled) return MintShared(grant_id, need, retry_after, failures);
  ASSIGN_OR_RETURN(Grant grant, vault_.GetGrant(grant_id));
  RETURN_IF_ERROR(Usable(grant));
  return Refresh(std::move(grant), need, nullptr, retry_after, failures);
}

std::optional<AccessToken> TokenMinter::AdoptShared(const Grant& grant, const TokenNeed& need) {
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
  AccessToken adopted{SharedSecret(*std::move(token)), t.token_type, t.expire_time, grant.mailbox,
                      t.scopes.empty() ? grant.scopes : t.scopes, t.issue_time};
  // An app-only grant's token is its app's: held, it serves the app's other
  // grants on this replica too (ReuseHeldAppToken).
  if (grant.kind == GrantKind::kAppOnly) {
    if (absl::StatusOr<App> app = vault_.GetApp(grant.app); app.ok()) {
      if (const std::string key = AppTokenKey(grant, *app); !key.empty()) KeepAppToken(key, adopted);
    }
  }
  return adopted;
}

absl::StatusOr<AccessToken> TokenMinter::MintShared(absl::string_view grant_id, const TokenNeed& need,
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
    if (std::optional<AccessToken> held = ReuseHeldAppToken(grant, need)) return *std::move(held);
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
      absl::StatusOr<AccessToken> token = Refresh(grant, need, &*lease, retry_after, failures);
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

std::string TokenMinter::AppTokenKey(const Grant& grant, const App& app) const {
  if (grant.kind != GrantKind::kAppOnly) return "";
  auto provider = providers_.find(app.provider);
  if (provider == providers_.end() || !provider->second->AppOnlyTokenIsPerApp()) return "";
  return absl::StrCat(app.id, "\n", ProviderName(app.provider), "\n", app.tenant, "\n", app.client_id, "\n",
                      absl::StrJoin(grant.scopes, " "));
}

std::optional<AccessToken> TokenMinter::ReuseHeldAppToken(const Grant& grant, const TokenNeed& need) {
  if (grant.kind != GrantKind::kAppOnly) return std::nullopt;
  {
    absl::MutexLock lock(&app_tokens_mu_);
    if (app_tokens_.empty()) return std::nullopt;  // nothing held: no need to read the app
  }
  absl::StatusOr<App> app = vault_.GetApp(grant.app);
  if (!app.ok()) return std::nullopt;  // the lease path reports it
  const std::string key = AppTokenKey(grant, *app);
  if (key.empty()) return std::nullopt;
  return ReuseAppToken(key, grant, need);
}

std::optional<AccessToken> TokenMinter::ReuseAppToken(const std::string& key, const Grant& grant,
                                                       const TokenNeed& need) {
  absl::MutexLock lock(&app_tokens_mu_);
  auto it = app_tokens_.find(key);
  if (it == app_tokens_.end()) return std::nullopt;
  const AppToken& t = it->second;
  if (t.expire_time - clock_.Now() < need.min_valid_for || t.expire_time <= need.newer_than) return std::nullopt;
  return AccessToken{t.token.Clone(), t.token_type, t.expire_time, grant.mailbox, t.scopes, t.issue_time};
}

void TokenMinter::KeepAppToken(const std::string& key, const AccessToken& token) {
  absl::MutexLock lock(&app_tokens_mu_);
  auto it = app_tokens_.find(key);
  if (it != app_tokens_.end() && it->second.expire_time >= token.expire_time) return;
  app_tokens_.insert_or_assign(
      key, AppToken{token.token.Clone(), token.token_type, token.expire_time, token.scopes, token.issue_time});
}

absl::StatusOr<AccessToken> TokenMinter::Refresh(Grant grant, const TokenNeed& need, const RefreshLease* lease,
                                                  RetryAfter* retry_after, int failures) {
  ASSIGN_OR_RETURN(App app, vault_.GetApp(grant.app));
  auto provider = providers_.find(app.provider);
  if (provider == providers_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("app \"", app.id, "\": tokens from ", ProviderName(app.provider),
                                                      " are not available in this version of tokenbrokerd"));
  }
  // App-only grants of one app and scopes share the app's token where the
  // provider's token is the app's.
  const std::string app_key = AppTokenKey(grant, app);
  if (!app_key.empty()) {
    // No store write: the grant cost no provider request (its
    // last_refresh_time stays the time it last did).
    if (std::optional<AccessToken> reused = ReuseAppToken(app_key, grant, need)) return *std::move(reused);
  }
  std::optional<Secret> refresh_token;
  if (grant.kind == GrantKind::kDelegated) {
    ASSIGN_OR_RETURN(refresh_token, vault_.OpenRefreshToken(grant));
  }
  std::optional<IssuedToken> issued;
  const std::string tenant = PacingKey(ProviderName(app.provider), app.tenant, app.id);
  const absl::Time requested = clock_.Now();
  ASSIGN_OR_RETURN(
      std::optional<ProviderFailure> failed,
      TryAppCredentials(vault_, clock_, logger_, app,
                        [&](const AppCredential& credential, const Secret& secret) -> std::optional<ProviderFailure> {
                          TokenRequest request{&app, &grant, &credential, &secret,
                                               refresh_token ? &*refresh_token : nullptr};
                          absl::Time retry_at;
                          if (absl::Status paced = pacer_.Wait(tenant, &retry_at); !paced.ok()) {
                            ProviderFailure throttled;
                            throttled.kind = FailureKind::kThrottled;
                            throttled.oauth_error = "paced";
                            throttled.message = std::string(paced.message());
                            throttled.retry_after = std::max(absl::Seconds(1), retry_at - clock_.Now());
                            return throttled;
                          }
                          const absl::Time start = clock_.Now();
                          // One limit for background and callers' refreshes.
                          ConcurrencyLimit::Slot slot = provider_requests_.Acquire();
                          TokenReply reply = provider->second->RequestToken(request);
                          if (!reply.ok() && reply.failure.kind == FailureKind::kThrottled) {
                            pacer_.Throttled(tenant, reply.failure.retry_after);
                          }
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
    AccessToken token{SharedSecret(std::move(issued->access_token)), issued->token_type, issued->expire_time,
                      grant.mailbox, issued->scopes.empty() ? grant.scopes : issued->scopes, requested};
    if (!app_key.empty()) KeepAppToken(app_key, token);
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
