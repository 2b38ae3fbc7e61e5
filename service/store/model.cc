#include "service/store/model.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tokenbroker {

absl::string_view ProviderName(Provider p) {
  switch (p) {
    case Provider::kMicrosoft:
      return "microsoft";
    case Provider::kGoogle:
      return "google";
    case Provider::kOidc:
      return "oidc";
  }
  return "unknown";
}

absl::string_view GrantStateName(GrantState s) {
  switch (s) {
    case GrantState::kActive:
      return "active";
    case GrantState::kPendingConsent:
      return "pending_consent";
    case GrantState::kNeedsReconsent:
      return "needs_reconsent";
    case GrantState::kAppCredentialInvalid:
      return "app_credential_invalid";
    case GrantState::kDisabled:
      return "disabled";
  }
  return "unknown";
}

absl::string_view GrantKindName(GrantKind k) {
  switch (k) {
    case GrantKind::kDelegated:
      return "delegated";
    case GrantKind::kAppOnly:
      return "app_only";
    case GrantKind::kServiceAccount:
      return "service_account";
  }
  return "unknown";
}

absl::string_view CredentialKindName(CredentialKind k) {
  switch (k) {
    case CredentialKind::kClientSecret:
      return "client_secret";
    case CredentialKind::kCertificate:
      return "certificate";
    case CredentialKind::kServiceAccountKey:
      return "service_account_key";
  }
  return "unknown";
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  bool ok = id.size() <= 63 && absl::ascii_islower(static_cast<unsigned char>(id[0])) && id.back() != '-';
  for (char c : id) {
    ok = ok && (absl::ascii_islower(static_cast<unsigned char>(c)) || absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
                c == '-');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", absl::CHexEscape(id.substr(0, 80)),
        "\" is not a valid id; use 1-63 characters of a-z, 0-9 and '-', starting with a letter"));
  }
  return absl::OkStatus();
}

absl::Status RecordNotFound(absl::string_view what, absl::string_view id) {
  return absl::NotFoundError(absl::StrCat(what, " \"", id, "\" does not exist"));
}

absl::Status RecordVersionMoved(absl::string_view what, absl::string_view id, int64_t expected) {
  return absl::AbortedError(absl::StrCat(what, " \"", id, "\" was changed by someone else (expected version ",
                                         expected, "); read it again and retry"));
}

absl::Status LeaseTakenOver(absl::string_view grant_id, absl::string_view holder, int64_t fence) {
  return absl::FailedPreconditionError(absl::StrCat("the refresh lease of grant \"", grant_id, "\" held by ", holder,
                                                    " (fence ", fence,
                                                    ") was taken over by another replica; its write is refused"));
}

std::string CredentialSecretAad(absl::string_view app_id, absl::string_view credential_id) {
  return absl::StrCat("app/", app_id, "/credential/", credential_id, "/secret");
}

std::string RefreshTokenAad(absl::string_view grant_id) { return absl::StrCat("grant/", grant_id, "/refresh_token"); }
std::string AccessTokenAad(absl::string_view grant_id) { return absl::StrCat("grant/", grant_id, "/access_token"); }
std::string ConsentAad(absl::string_view consent_key) { return absl::StrCat("consent/", consent_key); }

}  // namespace tokenbroker
