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
  bool attempted = false;
  absl::Status unreadable;  // the first credential that did not open
  for (size_t i : order) {
    AppCredential& credential = app.credentials[i];
    absl::StatusOr<Secret> secret = vault.OpenCredentialSecret(app, credential);
    if (!secret.ok()) {
      // A damaged value or one sealed under a key that is gone: the next
      // credential may well work. Marked failing, so `app show` says which.
      logger.Error("an app credential does not open; trying the next one",
                   {{"app", app.id}, {"credential", credential.id}, {"error", secret.status()}});
      if (unreadable.ok()) unreadable = secret.status();
      const ProviderError error{"sealed_value_unreadable", 0, std::string(secret.status().message()), clock.Now()};
      if (!credential.failing || credential.last_error.oauth_error != error.oauth_error) {
        credential.failing = true;
        credential.last_error = error;
        app_changed = true;
      }
      continue;
    }
    attempted = true;
    failure = attempt(credential, *secret);
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
  if (app_changed) RETURN_IF_ERROR(vault.RecordCredentialHealth(app));
  // Not one credential opened: that (DATA_LOSS, naming the record) is the error.
  if (!attempted && !unreadable.ok()) return unreadable;
  return failure;
}

}  // namespace tokenbroker
