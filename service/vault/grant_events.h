// The named changes of a grant's state, and the one table that says where
// each leads from each state. Every change of a grant's state goes through
// NextGrantState (Vault::ApplyGrantEvent); nothing else sets Grant::state on
// a stored grant.
#ifndef TOKENBROKER_SERVICE_VAULT_GRANT_EVENTS_H_
#define TOKENBROKER_SERVICE_VAULT_GRANT_EVENTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/store/model.h"

namespace tokenbroker {

enum class GrantEvent {
  kConsentStarted,       // consent (code or device flow) begun for the grant
  kConsentFailed,        // the user declined, or the flow expired
  kConsented,            // a refresh token was redeemed or imported
  kRefreshed,            // the provider issued a token
  kRefreshTokenRefused,  // invalid_grant, consent revoked, token expired
  kCredentialsRefused,   // every credential of the app refused (invalid_client)
  kDisabled,             // an admin disabled it
  kEnabled,              // an admin enabled it
};

// "consent_started", "refresh_token_refused", ...
absl::string_view GrantEventName(GrantEvent event);

// The state a grant in `from` moves to on `event`; the same state when the
// event changes nothing there (enabling an active grant). FAILED_PRECONDITION
// naming both when the event cannot happen in that state (a refresh refused
// for a disabled grant must not bring it back as needs_reconsent).
absl::StatusOr<GrantState> NextGrantState(GrantState from, GrantEvent event);

// The commands that have the user consent again for `grant`:
// "have the user consent with `tokenbrokerctl consent begin ID --app A
// --mailbox M` (or `tokenbrokerctl consent device ...`)".
std::string ConsentAgainCommands(const Grant& grant);

// What someone must do for a grant in its state, for a person: consent
// again, add a working credential, finish consent, enable it; empty for an
// active grant.
std::string GrantRemedy(const Grant& grant);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_VAULT_GRANT_EVENTS_H_
