// TokenManager: access tokens for grants, from a cache that is refreshed at
// most once at a time per grant.
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
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/vault/vault.h"

namespace tokenbroker {

struct AccessToken {
  Secret token;
  std::string token_type;
  absl::Time expire_time;
  std::string mailbox;
  std::vector<std::string> scopes;
  // The SASL XOAUTH2 initial response for mailbox and token, computed once.
  Secret sasl_xoauth2;
};

// What happened, for metrics: "cache_hit", "refreshed", "stale" (the provider
// failed and a still-valid cached token was served) or "error".
using TokenOutcomeObserver = std::function<void(absl::string_view outcome)>;
// Each provider request's outcome: "ok" or a FailureKindName, with its latency.
using RefreshObserver = std::function<void(Provider provider, absl::string_view outcome, absl::Duration latency)>;

struct TokenManagerOptions {
  // A cached token is refreshed in the background at expiry - slack - jitter:
  // slack is the larger of min_slack and slack_fraction of the token's
  // lifetime; jitter is uniform in [0, jitter_fraction * slack], fixed per
  // token, so that many grants never refresh in the same second.
  absl::Duration min_slack = absl::Minutes(5);
  double slack_fraction = 0.1;
  double jitter_fraction = 0.5;
  // First back-off after a transient failure; doubles up to max_backoff, with
  // +-20% jitter.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  TokenOutcomeObserver on_token;
  RefreshObserver on_refresh;
};

class TokenManager {
 public:
  TokenManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock, Logger& logger,
               TokenManagerOptions options = {});

  // NOT_FOUND (no grant), FAILED_PRECONDITION (disabled, needs consent, app
  // credentials failing: the message says what to do), UNAVAILABLE (provider
  // outage or throttling, and no cached token is still valid).
  absl::StatusOr<AccessToken> GetAccessToken(absl::string_view grant_id, absl::Duration min_valid_for);
  // When the cached token stays valid that long: calls `use` with it (under
  // the grant's lock, without copying: `use` must be quick and must not call
  // back into this class), counts a cache hit and returns true. Otherwise
  // false. Never blocks on a refresh or the provider: callers on
  // latency-critical threads try this first and do GetAccessToken elsewhere.
  bool UseCachedToken(absl::string_view grant_id, absl::Duration min_valid_for,
                      const std::function<void(const AccessToken&)>& use);

  // The expiry of every cached token, by grant id (for metrics).
  std::map<std::string, absl::Time> CachedExpiries();

  // Drops the cached token of a grant (after an IMAP authentication failure).
  void Invalidate(absl::string_view grant_id);
  // Forgets everything known about a grant: cached token, last error and
  // back-off (after new consent, so that the next call refreshes at once).
  void Forget(absl::string_view grant_id);

  // For the scheduler: the grants whose cached token is due for a refresh
  // ahead of expiry at `now` (and not backing off or already refreshing).
  std::vector<std::string> DueForRefresh(absl::Time now);
  // Refreshes a grant now, whatever its cache holds (single-flight with
  // callers). Not counted in the caller-facing token metrics.
  absl::Status RefreshNow(absl::string_view grant_id);

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
    int consecutive_failures ABSL_GUARDED_BY(mu) = 0;
  };

  std::shared_ptr<Entry> EntryFor(absl::string_view grant_id);
  absl::StatusOr<AccessToken> Fetch(absl::string_view grant_id, absl::Duration min_valid_for, bool observed);
  absl::Time RefreshAt(const AccessToken& token, absl::Time issued);
  // One refresh: provider request(s) and the store writes. Returns the token,
  // or the status callers get; `retry_after` is set for transient failures.
  absl::StatusOr<AccessToken> Refresh(absl::string_view grant_id, absl::Time* retry_after, int failures);
  absl::Status RecordGrantFailure(Grant grant, GrantState state, const ProviderFailure& failure);
  absl::Duration Backoff(int failures);
  static AccessToken Copy(const AccessToken& t);

  Vault& vault_;
  std::map<Provider, IdentityProvider*> providers_;
  const Clock& clock_;
  Logger& logger_;
  TokenManagerOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::Mutex bitgen_mu_;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(bitgen_mu_);
};

// The SASL XOAUTH2 initial response: base64("user=" + user + "\x01auth=Bearer "
// + token + "\x01\x01"). A secret.
Secret SaslXoauth2(absl::string_view user, const Secret& token);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_TOKEN_MANAGER_H_
