// Vault: the credential vault. Validates apps, credentials and grants, seals
// every secret before it reaches the CredentialStore (associated data = the
// record and field), opens them for the layers that need them, and re-seals
// everything under a new key online. Secrets go in and are never handed out
// over the API. Thread-safe (the store and sealer are).
#ifndef TOKENBROKER_SERVICE_VAULT_VAULT_H_
#define TOKENBROKER_SERVICE_VAULT_VAULT_H_

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/secret.h"
#include "service/crypto/sealer.h"
#include "service/store/credential_store.h"
#include "service/vault/grant_events.h"

namespace tokenbroker {

// Secrets larger than this are refused (no real secret is near it).
inline constexpr size_t kMaxSecretBytes = 64 * 1024;

// A credential as given by an admin or the configuration file.
struct CredentialInput {
  std::string id;
  CredentialKind kind = CredentialKind::kClientSecret;
  // The client secret, the certificate's private key PEM, or the
  // service-account key JSON.
  Secret secret;
  // Certificates: the certificate PEM.
  std::string certificate_pem;
  // Client secrets: when the secret expires (required). Certificates: must be
  // unset (taken from the certificate).
  absl::Time not_after = absl::InfiniteFuture();
};

struct KeyRotationReport {
  std::string active_key_id;
  uint64_t resealed = 0;
  std::set<std::string> keys_still_in_use;
};

// Who made a grant change a listener hears of.
enum class ChangeOrigin {
  kThisReplica,   // this process wrote it
  kOtherReplica,  // another replica published it on the store
};

// How Vault::UpdateGrant writes a grant record.
struct GrantUpdate {
  const Grant* read = nullptr;          // start from this copy, not a fresh read
  const RefreshLease* lease = nullptr;  // write only while holding this lease
  int attempts = 3;
  bool notify = false;  // tell the listeners even when the state stays
};

class Vault {
 public:
  Vault(CredentialStore& store, Sealer& sealer, const Clock& clock) : store_(store), sealer_(sealer), clock_(clock) {}

  // Apps. `spec.credentials`, times, version and source are ignored; the
  // credentials come from `credentials`, in order. INVALID_ARGUMENT names the
  // field ("app.client_id: required", "credentials[1].not_after: ...").
  absl::StatusOr<App> CreateApp(App spec, std::vector<CredentialInput> credentials,
                                RecordSource source = RecordSource::kApi);
  absl::StatusOr<App> GetApp(absl::string_view id) { return store_.GetApp(id); }
  absl::StatusOr<std::vector<App>> ListApps() { return store_.ListApps(); }
  // Records declared in the configuration file are changed only there: API
  // callers (`caller` kApi) get FAILED_PRECONDITION for them.
  absl::Status DeleteApp(absl::string_view id, bool force, RecordSource caller = RecordSource::kApi);
  // `position` past the end appends.
  absl::StatusOr<App> AddCredential(absl::string_view app_id, CredentialInput credential, size_t position);
  // Refused (FAILED_PRECONDITION) for the last credential of an app.
  absl::StatusOr<App> RemoveCredential(absl::string_view app_id, absl::string_view credential_id);
  // `order` must name every credential exactly once.
  absl::StatusOr<App> ReorderCredentials(absl::string_view app_id, const std::vector<std::string>& order);
  // Replaces the app's fields and credentials (configuration reconcile).
  absl::StatusOr<App> ReplaceApp(const App& current, App spec, std::vector<CredentialInput> credentials);
  // The plaintext of a credential, for the token engine.
  absl::StatusOr<Secret> OpenCredentialSecret(const App& app, const AppCredential& credential) const;
  // Writes which of `app`'s credentials are failing and why (after the
  // provider refused one, or its sealed value did not open). Losing a race
  // to another writer is harmless: the next refresh sees it again.
  absl::Status RecordCredentialHealth(const App& app);

  // Grants. CreateGrant takes app-only and service-account grants;
  // ImportGrant a delegated grant with its refresh token.
  absl::StatusOr<Grant> CreateGrant(Grant spec, RecordSource source = RecordSource::kApi);
  // With `replace`, an existing delegated grant of the same app gets the new
  // refresh token (compare-and-swap) and becomes active again; without one,
  // the grant is created (consent completing for a new grant).
  absl::StatusOr<Grant> ImportGrant(Grant spec, const Secret& refresh_token, bool replace = false);
  // Consent flows. Validates a delegated grant before consent starts (fills in
  // default scopes; refuses a grant id held by another app or kind) and returns
  // its app.
  absl::StatusOr<App> PrepareDelegatedGrant(Grant& spec);
  // Shows that consent is under way: a new grant is created in
  // pending_consent without a refresh token; an existing grant that cannot get
  // tokens (needs_reconsent, app_credential_invalid) moves to
  // pending_consent; an active grant keeps issuing tokens with its old refresh
  // token until the new one arrives (ImportGrant with replace).
  absl::StatusOr<Grant> MarkConsentPending(const Grant& spec);
  // Consent failed (declined, expired): a grant still pending_consent moves to
  // needs_reconsent with `error`; other grants only record the error.
  absl::Status RecordConsentFailure(absl::string_view grant_id, const ProviderError& error);
  absl::StatusOr<Grant> GetGrant(absl::string_view id) { return store_.GetGrant(id); }
  absl::StatusOr<std::vector<Grant>> ListGrants(const GrantFilter& filter) { return store_.ListGrants(filter); }
  absl::StatusOr<Grant> SetGrantEnabled(absl::string_view id, bool enabled);
  absl::Status DeleteGrant(absl::string_view id, RecordSource caller = RecordSource::kApi);
  absl::StatusOr<Secret> OpenRefreshToken(const Grant& grant) const;

  // The one compare-and-swap loop over a grant record: reads grant `id` (or
  // starts from `read`, a copy read earlier), lets `change` edit it, and
  // writes it if grant.version is still the stored one; when another writer
  // got in between, reads again and re-applies `change`, at most three times
  // (then ABORTED "kept changing; retry"). An error from `change` stops it
  // with nothing written. With `lease` (several replicas) the write is
  // refused once another replica has taken the grant's refresh lease. Tells
  // the grant's listeners when the state changed.
  // `change` returns whether there is anything to write.
  absl::StatusOr<Grant> UpdateGrant(absl::string_view id, const std::function<absl::StatusOr<bool>(Grant&)>& change,
                                    GrantUpdate options);
  // Moves grant `id` by `event` (the table in grant_events.h), recording
  // `error` as its last error when given (cleared on kConsented, kRefreshed,
  // kEnabled). Writes nothing when neither the state nor the error changes.
  absl::StatusOr<Grant> ApplyGrantEvent(absl::string_view id, GrantEvent event,
                                        std::optional<ProviderError> error = std::nullopt, GrantUpdate options = {});
  // A refresh went through: the grant's timestamps (and state, by
  // kRefreshed) are written once; losing a race to another writer is
  // harmless (ABORTED, nothing retried).
  absl::Status RecordRefresh(const Grant& grant, const RefreshLease* lease = nullptr);
  // A refresh that rotated the refresh token: seals `refresh_token` into
  // `grant` (with its timestamps, state by kRefreshed) and writes it
  // (compare-and-swap on grant.version; a change in between is read and the
  // token written over it). Durable when OK; ABORTED when the refresh token
  // itself was replaced in between (re-consent), which wins.
  // With `lease` (several replicas), the write is refused when another
  // replica has taken the grant's refresh lease since.
  absl::StatusOr<Grant> StoreRefreshToken(Grant grant, const Secret& refresh_token,
                                          const RefreshLease* lease = nullptr);
  // Access tokens shared by replicas through the store, sealed and bound to
  // the grant and its mailbox (a token for another mailbox does not open).
  absl::StatusOr<std::string> SealAccessToken(const Grant& grant, const Secret& token) const;
  absl::StatusOr<Secret> OpenAccessToken(const Grant& grant, const SharedAccessToken& token) const;
  // Pending consents kept in the store (several replicas), sealed and bound
  // to their key.
  absl::StatusOr<std::string> SealConsent(absl::string_view key, const Secret& payload) const;
  absl::StatusOr<Secret> OpenConsent(const PendingConsent& consent) const;

  // Opens every sealed value and re-seals it under the active key (so it also
  // checks every value's integrity). Stops at the first value that does not
  // open, naming its record.
  absl::StatusOr<KeyRotationReport> RotateKeys();

  // The store, for what is not a grant record (leases, shared tokens,
  // pending consents, audit). Grant records change only through the vault.
  CredentialStore& store() { return store_; }

  // The one way to hear that a grant changed: `listener` is called with the
  // grant's id (and who made the change) after every change made through the vault that a cache of the
  // grant must not outlive (created, imported or re-consented, consent
  // pending or failed, enabled, disabled, deleted, also when its app is
  // deleted with it), whoever made it: the admin API, consent flows, or the
  // reconciler of declared records. Rotating the refresh token
  // (StoreRefreshToken) is not such a change. Listeners run on the writer's
  // thread after the write; they must be quick and must not call the vault.
  // Such a change also drops the grant's shared access token and is published
  // to the other replicas on the store (CredentialStore::PublishChange), whose
  // own vaults tell their listeners through ApplyRemoteChange.
  using GrantListener = std::function<void(absl::string_view grant_id, ChangeOrigin origin)>;
  void OnGrantChanged(GrantListener listener);
  // A change another replica published: "grant:ID" tells the listeners about
  // that grant; "*" (the change feed reconnected, so changes may have been
  // missed) tells them "*", meaning every grant.
  void ApplyRemoteChange(absl::string_view change);
  // Called when a sealed value names a key the keyring does not have (another
  // replica rotated to a key this one has not loaded yet): re-reads the
  // keyring; the value is then opened again.
  void SetKeyringReloader(std::function<absl::Status()> reload);

  // The scopes a grant gets when none are given.
  static std::vector<std::string> DefaultScopes(Provider provider, GrantKind kind);

 private:
  absl::Status ValidateApp(const App& app) const;
  static absl::Status RefuseDeclared(absl::string_view what, absl::string_view id, RecordSource source,
                                     RecordSource caller);
  absl::StatusOr<AppCredential> SealCredential(const App& app, CredentialInput input, absl::string_view field) const;
  absl::Status ValidateGrant(const App& app, Grant& grant) const;
  void GrantChanged(absl::string_view grant_id);
  void TellListeners(absl::string_view grant_id, ChangeOrigin origin);
  // Sealer::Open, re-reading the keyring once when the value's key is unknown.
  absl::StatusOr<Secret> Open(absl::string_view sealed, absl::string_view associated_data) const;

  CredentialStore& store_;
  Sealer& sealer_;
  const Clock& clock_;
  mutable absl::Mutex listeners_mu_;
  std::vector<GrantListener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  std::function<absl::Status()> reload_keyring_ ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_VAULT_VAULT_H_
