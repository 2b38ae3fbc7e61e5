// TokenManager: access tokens for grants, from a cache that is refreshed at
// most once at a time per grant. It is the cache (single flight, waiters,
// back-off, refresh times); TokenMinter (token_minter.h) makes the tokens.
//
// GetAccessToken(grant, min_valid_for) returns a cached token that stays valid
// that long at once; otherwise one refresh runs and every concurrent caller
// shares its result. For delegated grants the provider's rotated refresh token
// is stored (compare-and-swap) before the new access token is handed out: if
// storing fails the caller gets an error and the old refresh token stays.
//
// Failures: invalid_grant moves the grant to needs_reconsent; invalid_client
// marks that credential failing and tries the app's next one (all failing:
// app_credential_invalid); transient failures and throttling back off with
// jitter (honouring Retry-After) and a still-valid cached token keeps being
// served until it truly expires. Nothing is deleted because of a failure.
//
// Thread-safe. Time comes from the injected clock.
#ifndef TOKENBROKER_SERVICE_TOKENS_TOKEN_MANAGER_H_
#define TOKENBROKER_SERVICE_TOKENS_TOKEN_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/tokens/token_minter.h"
#include "service/vault/vault.h"

namespace tokenbroker {

// What happened, for metrics: "cache_hit", "refreshed", "stale" (the provider
// failed and a still-valid cached token was served) or "error".
using TokenOutcomeObserver = std::function<void(absl::string_view outcome)>;


struct TokenManagerOptions {
  // A cached token is refreshed in the background at expiry - slack - jitter:
  // slack is the larger of min_slack and slack_fraction of the token's
  // lifetime; jitter is in [0, jitter_fraction * slack], spread evenly by a
  // hash of the grant and the token's expiry, so that many grants never
  // refresh in the same second and every replica computes the same time for
  // the same token.
  absl::Duration min_slack = absl::Minutes(5);
  double slack_fraction = 0.1;
  double jitter_fraction = 0.5;
  // First back-off after a transient failure; doubles up to max_backoff, with
  // +-20% jitter.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  TokenOutcomeObserver on_token;
  RefreshObserver on_refresh;
  ReplicaOptions replicas;
  // During a back-off, a caller that finds no valid token may probe the
  // provider once this long after the last request (not sooner than the
  // provider's own Retry-After), so that the first token after a long outage
  // does not wait out the whole back-off. The background scheduler keeps to
  // the back-off.
  absl::Duration probe_interval = absl::Seconds(10);
  // At most this many identity-provider requests at once, whoever asks: the
  // background scheduler and callers' refreshes share the limit.
  int max_concurrent_refreshes = 8;
  // Provider requests per tenant: a rate, and a tenant the provider throttles
  // left alone until its Retry-After (tenant_pacer.h).
  TenantPacerOptions pacing;
};

class TokenManager {
 public:
  TokenManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock, Logger& logger,
               TokenManagerOptions options = {});

  // NOT_FOUND (no grant), FAILED_PRECONDITION (disabled, needs consent, app
  // credentials failing: the message says what to do), UNAVAILABLE (provider
  // outage or throttling, and no cached token is still valid).
  absl::StatusOr<AccessToken> GetAccessToken(absl::string_view grant_id, absl::Duration min_valid_for);
  // When the cached token stays valid that long: calls `use` with it, counts
  // a cache hit and returns true; otherwise false. `use` runs under the
  // grant's lock held shared (callers building responses for one grant on
  // many threads do not queue behind each other): it copies what it needs
  // and must not call back into the TokenManager. Never blocks on a refresh
  // or the provider: callers on latency-critical threads try this first and
  // do GetAccessToken elsewhere.
  bool UseCachedToken(absl::string_view grant_id, absl::Duration min_valid_for,
                      const std::function<void(const AccessToken&)>& use);

  // The most identity-provider requests that were ever in flight at once,
  // and a wait until `n` refreshes wait for the limit (tests).
  int provider_requests_peak() { return minter_.provider_requests_peak(); }
  bool AwaitRefreshesWaitingForTheLimit(int n, absl::Duration timeout) {
    return minter_.AwaitRefreshesWaitingForTheLimit(n, timeout);
  }

  // The expiry of every cached token, by grant id (for metrics).
  std::map<std::string, absl::Time> CachedExpiries();

  // Drops the cached token of a grant (after an IMAP authentication failure).
  void Invalidate(absl::string_view grant_id);
  // The mail server refused `refused`, a token of this grant: refreshes the
  // grant unless its cached token is another one by now (a call refused with
  // the same token refreshed it first), so that one refused token costs one
  // refresh however many sessions met it.
  absl::Status RefreshRefused(absl::string_view grant_id, const Secret& refused);
  // Forgets everything known about a grant: cached token, last error and
  // back-off (after new consent, so that the next call refreshes at once).
  // "*": every grant.
  void Forget(absl::string_view grant_id);
  // Another replica stored a new access token for the grant: calls waiting for
  // it re-read the store now.
  void SharedTokenStored(absl::string_view grant_id);

  // For the scheduler: the grants whose cached token is due for a refresh
  // ahead of expiry at `now` (and not backing off or already refreshing),
  // each `delay(grant)` later than its refresh time when `delay` is given.
  std::vector<std::string> DueForRefresh(absl::Time now,
                                         const std::function<absl::Duration(absl::string_view)>& delay = nullptr);
  // Refreshes a grant now, whatever its cache holds (single-flight with
  // callers). Not counted in the caller-facing token metrics. With several
  // replicas, a token another replica refreshed since this one's cached token
  // will do instead; for a keep-alive (`keepalive_used_before` set) only if
  // the refresh token has been used since then.
  absl::Status RefreshNow(absl::string_view grant_id,
                          absl::Time keepalive_used_before = absl::InfinitePast());
  // For the scheduler: RefreshNow, unless the grant's cached token is no
  // longer due (it was replaced since DueForRefresh listed it: refreshed by
  // a caller, or taken from another replica). Keep-alives always run.
  absl::Status RefreshIfDue(absl::string_view grant_id, absl::Time keepalive_used_before = absl::InfinitePast());

 private:
  struct Entry {
    absl::Mutex mu;
    bool refreshing ABSL_GUARDED_BY(mu) = false;
    // Bumped when a refresh ends: waiters know theirs is done.
    uint64_t generation ABSL_GUARDED_BY(mu) = 0;
    std::optional<AccessToken> cached ABSL_GUARDED_BY(mu);
    // When the background scheduler refreshes the cached token.
    absl::Time refresh_at ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
    absl::Status last_error ABSL_GUARDED_BY(mu);
    absl::Time retry_after ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    // After a provider outage (transient failures), callers with no valid
    // token may probe from this time on (the provider's own Retry-After);
    // InfiniteFuture: no probing (the failure was not an outage).
    absl::Time probe_after ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
    // When the last provider request for this grant began.
    absl::Time last_attempt ABSL_GUARDED_BY(mu) = absl::InfinitePast();
    int consecutive_failures ABSL_GUARDED_BY(mu) = 0;
    // The expiry of the last token dropped by Invalidate (refused by the mail
    // server): a shared token no newer than it is that same token.
    absl::Time invalidated_expiry ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  };
  using Need = TokenNeed;

  std::shared_ptr<Entry> EntryFor(absl::string_view grant_id);
  // Drops the cached token the mail server refused, remembering its expiry.
  static void DropRefused(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu);
  // `force`: refresh even if the cached token would do (RefreshNow).
  absl::StatusOr<AccessToken> Fetch(absl::string_view grant_id, Need need, bool observed, bool force);
  absl::Time RefreshAt(absl::string_view grant_id, const AccessToken& token);
  static AccessToken Copy(const AccessToken& t);

  const Clock& clock_;
  TokenManagerOptions options_;
  // Makes the tokens this class caches.
  TokenMinter minter_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};


}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_TOKEN_MANAGER_H_
