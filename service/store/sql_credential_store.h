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
  absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& event) override;
  absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) override;
  absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& filter) override;
  absl::StatusOr<int64_t> PruneAuditEvents(absl::Time before) override;

 private:
  std::unique_ptr<SqlBackend> backend_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQL_CREDENTIAL_STORE_H_
