// TokenMinter: makes a new access token for a grant. It reads the grant and
// its app from the vault, checks the grant may get tokens, asks the identity
// provider (trying the app's credentials in order, within one limit on
// provider requests for the whole process), stores a rotated refresh token
// before the token is handed out, and records what the provider refused as a
// grant event. With several replicas it does all that under the grant's
// refresh lease, or adopts the token another replica just stored.
//
// It caches nothing and keeps no per-grant state: TokenManager is the cache
// (single flight, waiters, back-off) in front of it, as google-cloud-cpp's
// cached credentials decorate the credentials that mint.
//
// Thread-safe.
#ifndef TOKENBROKER_SERVICE_TOKENS_TOKEN_MINTER_H_
#define TOKENBROKER_SERVICE_TOKENS_TOKEN_MINTER_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/concurrency_limit.h"
#include "service/common/sasl.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/tokens/tenant_pacer.h"
#include "service/vault/vault.h"

namespace tokenbroker {

struct AccessToken {
  // Shared, not copied, by the grants that use one app token (and by the
  // copies handed out), so that 100,000 cached grants do not hold 100,000
  // copies of a few kilobytes each.
  SharedSecret token;
  std::string token_type;
  absl::Time expire_time;
  std::string mailbox;
  std::vector<std::string> scopes;
  // When it was requested from the provider (its lifetime starts here).
  absl::Time issue_time = absl::InfinitePast();
};

// Each provider request's outcome: "ok" or a FailureKindName, with its latency.
using RefreshObserver = std::function<void(Provider provider, absl::string_view outcome, absl::Duration latency)>;

// Several replicas on one store (docs/high-availability.md). A replica
// refreshes a grant only while it holds the grant's refresh lease in the
// store, re-reads the grant after taking it (another replica may have just
// refreshed), writes the rotated refresh token under the lease (refused when
// the lease was taken over) and stores the new access token sealed, so that
// the other replicas serve it without asking the provider. A replica that
// needs a token while another holds the lease waits for that refresh (told by
// SharedTokenStored, re-reading the store every wait_poll at most) instead of
// starting its own, for at most the lease's remaining time plus one lease_ttl.
struct ReplicaOptions {
  // Off: this process is the only one using the store.
  bool enabled = false;
  std::string replica_id;
  absl::Duration lease_ttl = absl::Seconds(30);
  absl::Duration wait_poll = absl::Milliseconds(200);
  // Each lease taken or not: "acquired", "took_over" (from a holder whose
  // lease ran out unreleased) or "contended" (another replica holds it).
  std::function<void(absl::string_view outcome)> on_lease;
  // A token another replica refreshed, served without a provider request.
  std::function<void()> on_adopted;
  // +1 when a call starts waiting for another replica's refresh, -1 when it
  // stops waiting.
  std::function<void(int delta)> on_waiting;
};

// What a new token must be to do.
struct TokenNeed {
  absl::Duration min_valid_for = absl::ZeroDuration();
  // Expiring later than this (a token newer than one already held).
  absl::Time newer_than = absl::InfinitePast();
  // Delegated grants: the refresh token used at or after this.
  absl::Time used_before = absl::InfinitePast();
};

// When to ask the provider again after a failure that may pass: the
// back-off, and for an outage (transient, throttled) when a caller may
// probe sooner (the provider's own Retry-After; InfiniteFuture: never).
struct RetryAfter {
  absl::Time backoff = absl::InfinitePast();
  absl::Time probe_after = absl::InfiniteFuture();
};

struct TokenMinterOptions {
  // First back-off after a failure that may pass; doubles up to
  // max_backoff, with +-20% jitter.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  RefreshObserver on_refresh;
  ReplicaOptions replicas;
  // At most this many identity-provider requests at once.
  int max_concurrent_refreshes = 8;
  // And at most this rate per provider and tenant.
  TenantPacerOptions pacing;
};

// When a delegated grant's refresh token was last used (its consent time if
// never): what keep-alive refreshes go by.
absl::Time RefreshTokenUsedTime(const Grant& grant);

class TokenMinter {
 public:
  TokenMinter(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock, Logger& logger,
              TokenMinterOptions options);

  // A new token for the grant that does what `need` asks: refreshed here, or
  // (several replicas) one another replica refreshed. `failures`: how many
  // failed in a row before (the back-off grows with it). Sets `retry_after`
  // for failures that may pass.
  absl::StatusOr<AccessToken> Mint(absl::string_view grant_id, const TokenNeed& need, RetryAfter* retry_after,
                                   int failures);
  // Another replica stored a new access token: calls waiting for one re-read
  // the store now.
  void SharedTokenStored();

  // The most provider requests ever in flight at once, and a wait until `n`
  // wait for the limit (tests).
  int provider_requests_peak() { return provider_requests_.peak(); }
  bool AwaitRefreshesWaitingForTheLimit(int n, absl::Duration timeout) {
    return provider_requests_.AwaitWaiting(n, timeout);
  }

 private:
  // Several replicas: Mint under the grant's refresh lease.
  absl::StatusOr<AccessToken> MintShared(absl::string_view grant_id, const TokenNeed& need, RetryAfter* retry_after,
                                         int failures);
  // The grant's shared token when it is what `need` asks for.
  std::optional<AccessToken> AdoptShared(const Grant& grant, const TokenNeed& need);
  // Waits until a shared token is stored after `seen` (or `timeout`).
  void WaitForSharedToken(uint64_t seen, absl::Duration timeout);
  uint64_t SharedTokensStored();
  // One refresh: provider request(s) and the store writes (under `lease` when
  // set). Returns the token, or the status callers get; `retry_after` is set
  // for failures that may pass.
  absl::StatusOr<AccessToken> Refresh(Grant grant, const TokenNeed& need, const RefreshLease* lease,
                                      RetryAfter* retry_after, int failures);
  // The key of the app token an app-only grant of `app` shares, or "" when
  // the grant's token is its own (delegated, or a provider whose app-only
  // token is per mailbox).
  std::string AppTokenKey(const Grant& grant, const App& app) const;
  // The app token kept for `key` when it does what `need` asks, as `grant`'s.
  std::optional<AccessToken> ReuseAppToken(const std::string& key, const Grant& grant, const TokenNeed& need);
  // Several replicas: the app token this replica holds for an app-only
  // grant's app, when it does what `need` asks. The token is the app's, the
  // same for every grant of the app, so it needs no lease and no store write.
  std::optional<AccessToken> ReuseHeldAppToken(const Grant& grant, const TokenNeed& need);
  void KeepAppToken(const std::string& key, const AccessToken& token);
  // The provider refused the grant's refresh token or its app's
  // credentials: the grant moves by `event` (notified to every cache of it),
  // unless it changed meanwhile so that the event no longer applies.
  absl::Status RecordGrantFailure(const Grant& grant, GrantEvent event, const ProviderFailure& failure,
                                  const RefreshLease* lease);
  absl::Duration Backoff(int failures);

  Vault& vault_;
  const std::map<Provider, IdentityProvider*> providers_;
  const Clock& clock_;
  Logger& logger_;
  const TokenMinterOptions options_;
  ConcurrencyLimit provider_requests_{options_.max_concurrent_refreshes};
  // Paces requests per tenant before they take one of those slots, so that
  // a throttled or busy tenant holds no slot another tenant could use.
  TenantPacer pacer_{clock_, options_.pacing};
  // The newest app-only token per app and scopes, for providers whose
  // client-credentials token is the app's (IdentityProvider::
  // AppOnlyTokenIsPerApp): the grants of one app cost one provider request
  // per token lifetime, not one each.
  struct AppToken {
    SharedSecret token;
    std::string token_type;
    absl::Time expire_time;
    std::vector<std::string> scopes;
    absl::Time issue_time;
  };
  absl::Mutex app_tokens_mu_;
  absl::flat_hash_map<std::string, AppToken> app_tokens_ ABSL_GUARDED_BY(app_tokens_mu_);
  absl::Mutex shared_mu_;
  uint64_t shared_stored_ ABSL_GUARDED_BY(shared_mu_) = 0;
  absl::Mutex bitgen_mu_;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(bitgen_mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_TOKEN_MINTER_H_
