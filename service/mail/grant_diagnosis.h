// GrantDiagnosis: a grant's set-up checked step by step, the way an admin
// would by hand, each step passed, failed with the set-up step that is
// missing, or skipped (an earlier step failed):
//   grant          the grant's state (disabled, needs consent again, ...)
//   credential     the app's credential is accepted and not about to expire
//   token          a token is obtained from the identity provider
//   claims         (Microsoft) the token's audience is Exchange Online, it
//                  carries IMAP.AccessAsApp (app-only) or
//                  IMAP.AccessAsUser.All (delegated), and its tenant
//   imap_connect   the IMAP server answers over TLS with a trusted certificate
//   authenticate   SASL (XOAUTH2 or OAUTHBEARER) with the token
//   select         a harmless command after it: the folder examined read-only
// Exchange's answers name the missing step: "NO AUTHENTICATE failed." for an
// app-only grant is a missing (or wrongly created) Exchange service
// principal; "BAD User is authenticated but not connected." a missing
// Add-MailboxPermission. Nothing secret is in a step's text.
#ifndef TOKENBROKER_SERVICE_MAIL_GRANT_DIAGNOSIS_H_
#define TOKENBROKER_SERVICE_MAIL_GRANT_DIAGNOSIS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/common/clock.h"
#include "service/mail/mail_pool.h"
#include "service/tokens/token_manager.h"
#include "service/vault/vault.h"

namespace tokenbroker {

struct DiagnosisStep {
  enum class Result { kPassed, kFailed, kSkipped };
  std::string name;    // "grant", "credential", "token", ...
  Result result = Result::kPassed;
  std::string detail;  // what was found
  std::string fix;     // a failure: what to do
};

struct GrantDiagnosisReport {
  std::string grant_id;
  std::vector<DiagnosisStep> steps;
  // Every step passed.
  bool passed() const;
};

// "passed", "failed", "skipped".
absl::string_view DiagnosisResultName(DiagnosisStep::Result result);

// A credential expiring sooner than this fails the credential step.
inline constexpr absl::Duration kCredentialExpiryWarning = absl::Hours(24 * 14);

class GrantDiagnosis {
 public:
  // `options` and `opener` as the mail pool's (server, timeouts, CA file,
  // SASL mechanism); a null opener opens real TLS sessions.
  GrantDiagnosis(Vault& vault, TokenManager& tokens, const Clock& clock, MailPoolOptions options,
                 ImapOpener opener = nullptr);

  // NOT_FOUND when the grant does not exist; otherwise every step, in order.
  absl::StatusOr<GrantDiagnosisReport> Run(absl::string_view grant_id, absl::string_view folder = "INBOX");

 private:
  Vault& vault_;
  TokenManager& tokens_;
  const Clock& clock_;
  const MailPoolOptions options_;
  const ImapOpener opener_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_MAIL_GRANT_DIAGNOSIS_H_
