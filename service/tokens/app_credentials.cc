#include "service/tokens/app_credentials.h"

#include <vector>

#include "service/common/status_macros.h"

namespace tokenbroker {

absl::StatusOr<std::optional<ProviderFailure>> TryAppCredentials(Vault& vault, const Clock& clock, Logger& logger,
                                                                 App& app, const CredentialAttempt& attempt) {
  std::vector<size_t> order;
  for (size_t i = 0; i < app.credentials.size(); ++i) {
    if (!app.credentials[i].failing) order.push_back(i);
  }
  for (size_t i = 0; i < app.credentials.size(); ++i) {
    if (app.credentials[i].failing) order.push_back(i);
  }
  std::optional<ProviderFailure> failure;
  bool app_changed = false;
  for (size_t i : order) {
    AppCredential& credential = app.credentials[i];
    ASSIGN_OR_RETURN(Secret secret, vault.OpenCredentialSecret(app, credential));
    failure = attempt(credential, secret);
    if (!failure.has_value()) {
      if (credential.failing) {
        credential.failing = false;
        credential.last_error = {};
        app_changed = true;
      }
      break;
    }
    if (failure->kind != FailureKind::kInvalidClient) break;
    logger.Warn("the identity provider rejected an app credential; trying the next one",
                {{"app", app.id}, {"credential", credential.id}, {"error", failure->message}});
    credential.failing = true;
    credential.last_error = {failure->oauth_error, failure->provider_code, failure->message, clock.Now()};
    app_changed = true;
  }
  if (order.empty()) {
    failure = ProviderFailure{FailureKind::kInvalidClient, "no_credential", 0, "the app has no credential", 0,
                              absl::ZeroDuration()};
  }
  if (app_changed) {
    absl::StatusOr<int64_t> written = vault.store().UpdateApp(app);
    if (!written.ok() && !absl::IsAborted(written.status())) return written.status();
  }
  return failure;
}

}  // namespace tokenbroker
