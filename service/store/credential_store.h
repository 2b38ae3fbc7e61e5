// CredentialStore: where apps, grants and audit events persist.
//
// Implementations: SqliteCredentialStore (embedded default),
// PostgresCredentialStore (shared by replicas), InMemoryCredentialStore (tests
// of the layers above). All pass tests/unit/store/conformance_test.cc.
//
// Stores hold sealed values only; sealing happens above (vault/). Every write
// of an app or grant is a compare-and-swap on its version, so two writers can
// never silently overwrite each other (a rotated refresh token in particular):
// the loser gets ABORTED and re-reads. Implementations are thread-safe.
#ifndef TOKENBROKER_SERVICE_STORE_CREDENTIAL_STORE_H_
#define TOKENBROKER_SERVICE_STORE_CREDENTIAL_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/store/model.h"

namespace tokenbroker {

struct GrantFilter {
  std::string app;                  // empty: any
  std::optional<GrantState> state;  // nullopt: any
  // Paging: only grants whose id sorts after this one; at most `limit` (0:
  // all).
  std::string after_id;
  size_t limit = 0;
};

struct AuditFilter {
  std::string caller, action, grant, result;
  absl::Time since = absl::InfinitePast();
  absl::Time until = absl::InfiniteFuture();
  // Only events with a smaller id (paging, newest first); 0: no bound.
  int64_t before_id = 0;
  int limit = 100;
};

// One sealed value and where it lives, for key rotation.
struct SealedField {
  enum class Kind { kCredentialSecret, kRefreshToken };
  Kind kind;
  std::string app;         // kCredentialSecret
  std::string credential;  // kCredentialSecret
  std::string grant;       // kRefreshToken
  std::string sealed;
  // The associated data the value was sealed with.
  std::string Aad() const;
};

// A grant's refresh lease (several replicas on one store): at most one holder
// refreshes a grant at a time. The fence increases with every acquisition, so
// a holder whose lease expired and was taken over cannot overwrite what its
// successor wrote (writes under a lease check it).
struct RefreshLease {
  std::string grant;
  std::string holder;
  int64_t fence = 0;
  // Acquired by `holder` (false: someone else holds it; holder and remaining
  // say who, and for how much longer).
  bool acquired = false;
  // Acquired from a holder whose lease had run out without being released.
  bool took_over = false;
  // How long the lease lasts from now, by the store's clock.
  absl::Duration remaining = absl::ZeroDuration();
};

// An access token shared by the replicas, sealed like every other secret
// (associated data AccessTokenAad(grant)).
struct SharedAccessToken {
  std::string sealed;
  std::string token_type;
  std::vector<std::string> scopes;
  absl::Time expire_time = absl::InfinitePast();
  // The replica that refreshed it.
  std::string holder;
  int64_t fence = 0;
  // When it was requested (its lifetime, for the refresh ahead of expiry).
  absl::Time issue_time = absl::InfinitePast();
};

// A consent under way (several replicas: any replica completes it). `key` is
// "auth:" + SHA-256 of an authorization state, or "device:" + the grant id of a
// device flow; `sealed` holds what the flow needs (PKCE verifier, device
// code, ...), sealed with associated data ConsentAad(key).
struct PendingConsent {
  std::string key;
  std::string grant;
  std::string caller;
  std::string sealed;
  absl::Time expire_time = absl::InfinitePast();
  // Device flows: when the provider may be polled next.
  absl::Time next_poll = absl::InfiniteFuture();
};

// A replica and when it last said it is alive (the store's clock).
struct ReplicaRecord {
  std::string id;
  absl::Time start_time = absl::InfinitePast();
  absl::Time last_seen = absl::InfinitePast();
};

class CredentialStore {
 public:
  virtual ~CredentialStore() = default;

  // "sqlite", "postgres" or "memory".
  virtual absl::string_view kind() const = 0;

  // Stores a new app with its credentials at version 1. ALREADY_EXISTS.
  virtual absl::Status CreateApp(const App& app) = 0;
  // NOT_FOUND.
  virtual absl::StatusOr<App> GetApp(absl::string_view id) = 0;
  // Sorted by id.
  virtual absl::StatusOr<std::vector<App>> ListApps() = 0;
  // Replaces the app (fields, labels and credentials) when its stored version
  // is `app.version`; the stored version becomes app.version + 1, which is
  // returned. NOT_FOUND, or ABORTED when the version moved.
  virtual absl::StatusOr<int64_t> UpdateApp(const App& app) = 0;
  // Deletes the app. FAILED_PRECONDITION while grants use it unless `force`,
  // which deletes those grants too. NOT_FOUND.
  virtual absl::Status DeleteApp(absl::string_view id, bool force) = 0;

  // Stores a new grant at version 1. ALREADY_EXISTS; FAILED_PRECONDITION when
  // its app does not exist.
  virtual absl::Status CreateGrant(const Grant& grant) = 0;
  virtual absl::StatusOr<Grant> GetGrant(absl::string_view id) = 0;
  // Sorted by id; a page of them with filter.after_id and filter.limit.
  virtual absl::StatusOr<std::vector<Grant>> ListGrants(const GrantFilter& filter) = 0;
  // Compare-and-swap as UpdateApp. The write is durable when this returns OK.
  virtual absl::StatusOr<int64_t> UpdateGrant(const Grant& grant) = 0;
  virtual absl::Status DeleteGrant(absl::string_view id) = 0;

  // Every sealed value in the store.
  virtual absl::StatusOr<std::vector<SealedField>> ListSealedFields() = 0;
  // Replaces one sealed value if it still equals `field.sealed`; returns false
  // (not an error) when it changed meanwhile or its record is gone.
  virtual absl::StatusOr<bool> ReplaceSealedField(const SealedField& field, const std::string& resealed) = 0;

  // Several replicas. Time is the store's own clock, never a replica's.
  //
  // Takes the grant's refresh lease for `holder` for `ttl` when it is free,
  // released, run out, or held by `holder` already; otherwise returns who holds
  // it (acquired false). NOT_FOUND when the grant does not exist.
  virtual absl::StatusOr<RefreshLease> AcquireRefreshLease(absl::string_view grant_id, absl::string_view holder,
                                                           absl::Duration ttl) = 0;
  // Gives the lease up early (a no-op when it was taken over meanwhile).
  virtual absl::Status ReleaseRefreshLease(const RefreshLease& lease) = 0;
  // UpdateGrant under a lease: also FAILED_PRECONDITION ("lease ... taken
  // over") when `lease` is no longer the grant's newest.
  // (Stores for one process accept these too; the token engine uses them only
  // when replicas share the store.)
  virtual absl::StatusOr<int64_t> UpdateGrantUnderLease(const Grant& grant, const RefreshLease& lease) = 0;
  // The grant's shared access token, if any (expired ones too).
  virtual absl::StatusOr<std::optional<SharedAccessToken>> GetSharedAccessToken(absl::string_view grant_id) = 0;
  // Stores the grant's shared access token under `lease` (its holder and
  // fence are recorded) and releases the lease, in one transaction.
  // FAILED_PRECONDITION when the lease was taken over or the grant deleted.
  virtual absl::Status PutSharedAccessToken(const SharedAccessToken& token, const RefreshLease& lease) = 0;
  // Drops the grant's shared access token (disabled, re-consented, refused by
  // the mail server). OK when there was none.
  virtual absl::Status DeleteSharedAccessToken(absl::string_view grant_id) = 0;
  // Stores a pending consent, replacing one with the same key (and deleting
  // authorizations that expired, by the store's clock, unused).
  virtual absl::Status PutPendingConsent(const PendingConsent& consent) = 0;
  virtual absl::StatusOr<std::optional<PendingConsent>> GetPendingConsent(absl::string_view key) = 0;
  // Removes and returns a pending consent: of replicas taking the same key at
  // once, exactly one gets it.
  virtual absl::StatusOr<std::optional<PendingConsent>> TakePendingConsent(absl::string_view key) = 0;
  // Device flows due at `now` (next_poll reached), each claimed for this
  // caller by moving its next_poll to `now + hold`: of replicas claiming at
  // once, one gets each flow. Expired ones are included (to be failed).
  virtual absl::StatusOr<std::vector<PendingConsent>> ClaimDueDeviceConsents(absl::Time now, absl::Duration hold) = 0;
  // Replaces the pending consent `consent.key` when its sealed value is still
  // `expected_sealed` (not replaced by a newer flow meanwhile); with an empty
  // consent.sealed, deletes it. Returns whether it did.
  virtual absl::StatusOr<bool> ReplacePendingConsent(const PendingConsent& consent,
                                                     const std::string& expected_sealed) = 0;
  // Records that replica `id` is alive now (started at `start_time`).
  virtual absl::Status Heartbeat(absl::string_view id, absl::Time start_time) = 0;
  // Replicas seen within `within`, sorted by id; older records are deleted.
  virtual absl::StatusOr<std::vector<ReplicaRecord>> LiveReplicas(absl::Duration within) = 0;
  // Removes a replica's record (clean shutdown).
  virtual absl::Status RemoveReplica(absl::string_view id) = 0;
  // Tells every replica listening on this store that something changed
  // (`change`: "grant:ID", "app:ID", "token:ID"). Stores that only one process
  // uses do nothing.
  virtual absl::Status PublishChange(absl::string_view change) = 0;

  // Appends an audit event and returns its id.
  virtual absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& event) = 0;
  // Appends events in one transaction (all or none), in order.
  virtual absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) = 0;
  // Newest first.
  virtual absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& filter) = 0;
  // Deletes events older than `before`; returns how many.
  virtual absl::StatusOr<int64_t> PruneAuditEvents(absl::Time before) = 0;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_CREDENTIAL_STORE_H_
