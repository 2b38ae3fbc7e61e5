#include "service/vault/grant_events.h"

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

constexpr int kEvents = 8;
constexpr int kStates = 5;  // GrantState values 1..5

// kTable[from - 1][event]: the next state, or 0 where the event is refused.
constexpr int A = static_cast<int>(GrantState::kActive);
constexpr int P = static_cast<int>(GrantState::kPendingConsent);
constexpr int N = static_cast<int>(GrantState::kNeedsReconsent);
constexpr int C = static_cast<int>(GrantState::kAppCredentialInvalid);
constexpr int D = static_cast<int>(GrantState::kDisabled);
constexpr int kRefused = 0;

constexpr int kTable[kStates][kEvents] = {
    //           started  failed  consented  refreshed  rt_refused  creds_refused  disabled  enabled
    /* active */ {A, A, A, A, N, C, D, A},
    /* pending */ {P, N, A, kRefused, kRefused, kRefused, D, P},
    /* needs_reconsent */ {P, N, A, A, N, C, D, N},
    /* app_credential_invalid */ {P, C, A, A, N, C, D, C},
    /* disabled */ {D, D, A, D, kRefused, kRefused, D, A},
};

}  // namespace

absl::string_view GrantEventName(GrantEvent event) {
  switch (event) {
    case GrantEvent::kConsentStarted:
      return "consent_started";
    case GrantEvent::kConsentFailed:
      return "consent_failed";
    case GrantEvent::kConsented:
      return "consented";
    case GrantEvent::kRefreshed:
      return "refreshed";
    case GrantEvent::kRefreshTokenRefused:
      return "refresh_token_refused";
    case GrantEvent::kCredentialsRefused:
      return "credentials_refused";
    case GrantEvent::kDisabled:
      return "disabled";
    case GrantEvent::kEnabled:
      return "enabled";
  }
  return "unknown";
}

absl::StatusOr<GrantState> NextGrantState(GrantState from, GrantEvent event) {
  const int row = static_cast<int>(from) - 1;
  const int column = static_cast<int>(event);
  if (row < 0 || row >= kStates || column < 0 || column >= kEvents) {
    return absl::InternalError("unknown grant state or event");
  }
  const int next = kTable[row][column];
  if (next == kRefused) {
    return absl::FailedPreconditionError(
        absl::StrCat("a grant in state ", GrantStateName(from), " cannot take \"", GrantEventName(event), "\""));
  }
  return static_cast<GrantState>(next);
}

std::string ConsentAgainCommands(const Grant& grant) {
  const std::string args = absl::StrCat(grant.id, " --app ", grant.app, " --mailbox ", grant.mailbox);
  return absl::StrCat("have the user consent with `tokenbrokerctl consent begin ", args,
                      "` (or `tokenbrokerctl consent device ", args, "`)");
}

std::string GrantRemedy(const Grant& grant) {
  switch (grant.state) {
    case GrantState::kNeedsReconsent:
      return ConsentAgainCommands(grant);
    case GrantState::kAppCredentialInvalid:
      return absl::StrCat("every credential of app \"", grant.app,
                          "\" was refused; add a working one with `tokenbrokerctl app add-credential ", grant.app,
                          "`");
    case GrantState::kPendingConsent:
      return "waiting for the user to finish consent";
    case GrantState::kDisabled:
      return absl::StrCat("enable it with `tokenbrokerctl grant enable ", grant.id, "`");
    case GrantState::kActive:
      break;
  }
  return "";
}

}  // namespace tokenbroker
