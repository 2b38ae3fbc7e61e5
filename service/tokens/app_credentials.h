// Trying an app's credentials in order: working ones first (in the app's
// order), then those marked failing, so that a credential fixed at the provider
// is found again. A credential the provider rejects as invalid_client is marked
// failing and the next one is tried; one that works loses its failing mark.
// Used for refreshes, code redemption and device-code polling alike.
#ifndef TOKENBROKER_SERVICE_TOKENS_APP_CREDENTIALS_H_
#define TOKENBROKER_SERVICE_TOKENS_APP_CREDENTIALS_H_

#include <functional>
#include <optional>

#include "absl/status/statusor.h"
#include "service/common/clock.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/vault/vault.h"

namespace tokenbroker {

// One attempt with one credential: nullopt on success, else the failure.
using CredentialAttempt = std::function<std::optional<ProviderFailure>(const AppCredential&, const Secret&)>;

// Runs `attempt` with the app's credentials until one is not rejected as
// invalid_client, and writes the app back when a failing mark changed (losing
// a compare-and-swap race there is harmless). Returns nullopt when an attempt
// succeeded, else the last failure; an error only when a credential cannot be
// opened or the store fails.
absl::StatusOr<std::optional<ProviderFailure>> TryAppCredentials(Vault& vault, const Clock& clock, Logger& logger,
                                                                 App& app, const CredentialAttempt& attempt);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_APP_CREDENTIALS_H_
