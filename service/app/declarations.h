// Reconciles the apps and grants declared in the configuration file into the
// store: creates what is missing, updates what changed (fields, or the
// contents of a secret file), deletes what is no longer declared. Secrets are
// read from files on every pass, so a rotated Kubernetes Secret takes effect
// without a restart. Not thread-safe: one reconciler runs at a time.
#ifndef TOKENBROKER_SERVICE_APP_DECLARATIONS_H_
#define TOKENBROKER_SERVICE_APP_DECLARATIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "service/vault/vault.h"
#include "tokenbroker/config/v1/config.pb.h"

namespace tokenbroker {

struct ReconcileReport {
  int created = 0;
  int updated = 0;
  int unchanged = 0;
  int deleted = 0;
  // Declared records no longer in the file that could not be deleted.
  std::vector<std::string> kept;
  bool changed() const { return created + updated + deleted > 0; }
};

class DeclarationReconciler {
 public:
  DeclarationReconciler(const config::v1::Config& config, Vault& vault) : config_(config), vault_(vault) {}

  // INVALID_ARGUMENT naming the config key ("apps[0].credentials[1].
  // client_secret_file: cannot read ..."); nothing is changed for the record
  // in error, and records before it stay reconciled.
  absl::StatusOr<ReconcileReport> Reconcile();

 private:
  absl::Status ReconcileApp(int index, ReconcileReport& report);
  absl::Status ReconcileGrant(int index, ReconcileReport& report);

  const config::v1::Config& config_;
  Vault& vault_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_APP_DECLARATIONS_H_
