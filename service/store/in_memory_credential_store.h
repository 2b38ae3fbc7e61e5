// A CredentialStore in memory, for tests of the layers above. Same semantics
// as the SQL stores (it passes the same conformance suite). Thread-safe.
#ifndef TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_
#define TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_

#include <map>

#include "absl/base/thread_annotations.h"
#include <functional>

#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/store/credential_store.h"

namespace tokenbroker {

// Not final: tests override single methods to inject failures.
class InMemoryCredentialStore : public CredentialStore {
 public:
  // `clock` is the store's clock (lease expiry, heartbeats).
  explicit InMemoryCredentialStore(const Clock& clock = SystemClock::Get()) : clock_(clock) {}

  absl::string_view kind() const override { return "memory"; }
  absl::Status CreateApp(const App& app) override;
  absl::StatusOr<App> GetApp(absl::string_view id) override;
  absl::StatusOr<std::vector<App>> ListApps() override;
  absl::StatusOr<int64_t> UpdateApp(const App& app) override;
  absl::Status DeleteApp(absl::string_view id, bool force) override;
  absl::Status CreateGrant(const Grant& grant) override;
  absl::StatusOr<Grant> GetGrant(absl::string_view id) override;
  absl::StatusOr<std::vector<Grant>> ListGrants(const GrantFilter& filter) override;
  absl::StatusOr<int64_t> UpdateGrant(const Grant& grant) override;
  absl::Status DeleteGrant(absl::string_view id) override;
  absl::StatusOr<std::vector<SealedField>> ListSealedFields() override;
  absl::StatusOr<bool> ReplaceSealedField(const SealedField& field, const std::string& resealed) override;
  absl::StatusOr<RefreshLease> AcquireRefreshLease(absl::string_view grant_id, absl::string_view holder,
                                                   absl::Duration ttl) override;
  absl::Status ReleaseRefreshLease(const RefreshLease& lease) override;
  absl::StatusOr<int64_t> UpdateGrantUnderLease(const Grant& grant, const RefreshLease& lease) override;
  absl::StatusOr<std::optional<SharedAccessToken>> GetSharedAccessToken(absl::string_view grant_id) override;
  absl::Status PutSharedAccessToken(const SharedAccessToken& token, const RefreshLease& lease) override;
  absl::Status DeleteSharedAccessToken(absl::string_view grant_id) override;
  absl::Status PutPendingConsent(const PendingConsent& consent) override;
  absl::StatusOr<std::optional<PendingConsent>> GetPendingConsent(absl::string_view key) override;
  absl::StatusOr<std::optional<PendingConsent>> TakePendingConsent(absl::string_view key) override;
  absl::StatusOr<std::vector<PendingConsent>> ClaimDueDeviceConsents(absl::Time now, absl::Duration hold) override;
  absl::StatusOr<bool> ReplacePendingConsent(const PendingConsent& consent, const std::string& expected_sealed) override;
  absl::Status Heartbeat(absl::string_view id, absl::Time start_time) override;
  absl::StatusOr<std::vector<ReplicaRecord>> LiveReplicas(absl::Duration within) override;
  absl::Status RemoveReplica(absl::string_view id) override;
  // Calls every OnChange listener (as PostgreSQL's NOTIFY reaches every
  // listening replica, the writer included).
  absl::Status PublishChange(absl::string_view change) override;
  // For tests of several replicas on one store: hears PublishChange and the
  // "token:ID" change of PutSharedAccessToken.
  void OnChange(std::function<void(absl::string_view change)> listener);
  absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& event) override;
  absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) override;
  absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& filter) override;
  absl::StatusOr<int64_t> PruneAuditEvents(absl::Time before) override;

 private:
  struct Lease {
    std::string holder;
    int64_t fence = 0;
    absl::Time expire_time;
  };
  absl::Status CheckLease(const RefreshLease& lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> UpdateGrantLocked(const Grant& grant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, Lease, std::less<>> leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SharedAccessToken, std::less<>> access_tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ReplicaRecord, std::less<>> replicas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PendingConsent, std::less<>> consents_ ABSL_GUARDED_BY(mu_);
  absl::Mutex listeners_mu_;
  std::vector<std::function<void(absl::string_view)>> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  std::map<std::string, App, std::less<>> apps_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Grant, std::less<>> grants_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, AuditEvent> audit_ ABSL_GUARDED_BY(mu_);
  int64_t next_audit_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_
