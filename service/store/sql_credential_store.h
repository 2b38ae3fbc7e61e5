// CredentialStore over SQL, written once for SQLite and PostgreSQL (the
// schema of each is in sqlite_schema.h / postgres_schema.h; the statements
// here run on both).
#ifndef TOKENBROKER_SERVICE_STORE_SQL_CREDENTIAL_STORE_H_
#define TOKENBROKER_SERVICE_STORE_SQL_CREDENTIAL_STORE_H_

#include <memory>

#include "service/store/credential_store.h"
#include "service/store/sql_backend.h"

namespace tokenbroker {

class SqlCredentialStore final : public CredentialStore {
 public:
  explicit SqlCredentialStore(std::unique_ptr<SqlBackend> backend) : backend_(std::move(backend)) {}

  absl::string_view kind() const override { return backend_->kind(); }
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
  absl::Status PublishChange(absl::string_view change) override;
  absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& event) override;
  absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) override;
  absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& filter) override;
  absl::StatusOr<int64_t> PruneAuditEvents(absl::Time before) override;

 private:
  // The compare-and-swap write of UpdateGrant, inside a transaction.
  absl::Status WriteGrant(SqlSession& s, const Grant& grant);
  // FAILED_PRECONDITION unless `lease` is still the grant's newest (the row
  // stays locked until the transaction ends).
  absl::Status CheckLease(SqlSession& s, const RefreshLease& lease);

  std::unique_ptr<SqlBackend> backend_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQL_CREDENTIAL_STORE_H_
