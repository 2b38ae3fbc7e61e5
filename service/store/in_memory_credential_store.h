// A CredentialStore in memory, for tests of the layers above. Same semantics
// as the SQL stores (it passes the same conformance suite). Thread-safe.
#ifndef TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_
#define TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_

#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/credential_store.h"

namespace tokenbroker {

// Not final: tests override single methods to inject failures.
class InMemoryCredentialStore : public CredentialStore {
 public:
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
  absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& event) override;
  absl::Status AppendAuditEvents(const std::vector<AuditEvent>& events) override;
  absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& filter) override;
  absl::StatusOr<int64_t> PruneAuditEvents(absl::Time before) override;

 private:
  absl::Mutex mu_;
  std::map<std::string, App, std::less<>> apps_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Grant, std::less<>> grants_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, AuditEvent> audit_ ABSL_GUARDED_BY(mu_);
  int64_t next_audit_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_IN_MEMORY_CREDENTIAL_STORE_H_
