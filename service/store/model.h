// The broker's domain records: apps, their credentials, grants and audit
// events, as stored. Secret fields hold sealed values only (see
// crypto/sealer.h); nothing here is ever plaintext secret material.
#ifndef TOKENBROKER_SERVICE_STORE_MODEL_H_
#define TOKENBROKER_SERVICE_STORE_MODEL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tokenbroker {

enum class Provider { kMicrosoft = 1, kGoogle = 2, kOidc = 3 };
enum class CredentialKind { kClientSecret = 1, kCertificate = 2, kServiceAccountKey = 3 };
enum class AssertionAlgorithm { kPs256 = 1, kRs256 = 2 };
// How a client secret is sent to the token endpoint: in the form body
// (client_secret_post) or as HTTP Basic authentication (client_secret_basic).
enum class ClientSecretAuth { kPost = 1, kBasic = 2 };
enum class ImapSecurity { kImplicitTls = 1, kStartTls = 2 };
enum class GrantKind { kDelegated = 1, kAppOnly = 2, kServiceAccount = 3 };
enum class GrantState { kActive = 1, kPendingConsent = 2, kNeedsReconsent = 3, kAppCredentialInvalid = 4, kDisabled = 5 };
// Where a record came from: the API, or the configuration file (reconciled at
// start-up and on change; changed only by editing the file).
enum class RecordSource { kApi = 1, kConfig = 2 };

absl::string_view ProviderName(Provider p);           // "microsoft", "google", "oidc"
absl::string_view GrantStateName(GrantState s);       // "active", "needs_reconsent", ...
absl::string_view GrantKindName(GrantKind k);         // "delegated", "app_only", "service_account"
absl::string_view CredentialKindName(CredentialKind k);  // "client_secret", "certificate", ...

// The last failure a provider reported. Never contains a token or secret.
struct ProviderError {
  std::string oauth_error;
  int64_t provider_code = 0;
  std::string message;
  absl::Time time = absl::InfinitePast();
  bool empty() const { return oauth_error.empty() && message.empty(); }
  bool operator==(const ProviderError&) const = default;
};

struct AppCredential {
  std::string id;
  CredentialKind kind = CredentialKind::kClientSecret;
  absl::Time not_after = absl::InfiniteFuture();
  std::string thumbprint_sha1;
  std::string thumbprint_sha256;
  std::string subject;
  std::string service_account_email;
  // Certificates: the public certificate, PEM (not secret).
  std::string certificate_pem;
  // The sealed secret: client secret, private key PEM, or service-account key
  // JSON.
  std::string sealed_secret;
  bool failing = false;
  ProviderError last_error;
  absl::Time create_time = absl::InfinitePast();
  bool operator==(const AppCredential&) const = default;
};

struct App {
  std::string id;
  Provider provider = Provider::kMicrosoft;
  std::string tenant;
  std::string issuer;
  std::string authority_host;
  std::string client_id;
  std::string imap_host;
  int imap_port = 0;
  ImapSecurity imap_security = ImapSecurity::kImplicitTls;
  std::string token_endpoint;
  std::string authorization_endpoint;
  std::string device_authorization_endpoint;
  AssertionAlgorithm assertion_algorithm = AssertionAlgorithm::kPs256;
  ClientSecretAuth client_secret_auth = ClientSecretAuth::kPost;
  std::map<std::string, std::string> labels;
  RecordSource source = RecordSource::kApi;
  absl::Time create_time = absl::InfinitePast();
  absl::Time update_time = absl::InfinitePast();
  // In the order they are tried.
  std::vector<AppCredential> credentials;
  // Incremented by every write; writes are compare-and-swap on it.
  int64_t version = 0;
  bool operator==(const App&) const = default;
};

struct Grant {
  std::string id;
  std::string app;
  std::string mailbox;
  GrantKind kind = GrantKind::kAppOnly;
  std::string subject;
  std::vector<std::string> scopes;
  GrantState state = GrantState::kActive;
  ProviderError last_error;
  std::map<std::string, std::string> labels;
  RecordSource source = RecordSource::kApi;
  absl::Time create_time = absl::InfinitePast();
  absl::Time consent_time = absl::InfinitePast();
  absl::Time refresh_token_last_used_time = absl::InfinitePast();
  absl::Time last_refresh_time = absl::InfinitePast();
  // Delegated grants: the sealed refresh token. Empty for other kinds.
  std::string sealed_refresh_token;
  int64_t version = 0;
  bool operator==(const Grant&) const = default;
};

struct AuditEvent {
  int64_t id = 0;  // assigned by the store
  absl::Time time = absl::InfinitePast();
  std::string caller;
  std::string action;
  std::string method;
  std::string app;
  std::string grant;
  std::string result;
  std::string detail;
  std::string request_id;
  bool operator==(const AuditEvent&) const = default;
};

// Ids of apps, grants and credentials: 1-63 characters of a-z, 0-9 and '-',
// starting with a letter and not ending with '-'. INVALID_ARGUMENT naming
// `field` otherwise.
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// The store's errors, the same from every implementation.
absl::Status RecordNotFound(absl::string_view what, absl::string_view id);
absl::Status RecordVersionMoved(absl::string_view what, absl::string_view id, int64_t expected);
// A write under a refresh lease that another holder has taken since (or whose
// grant was deleted): FAILED_PRECONDITION.
absl::Status LeaseTakenOver(absl::string_view grant_id, absl::string_view holder, int64_t fence);

// The associated data that binds a sealed value to its record and field.
std::string CredentialSecretAad(absl::string_view app_id, absl::string_view credential_id);
std::string RefreshTokenAad(absl::string_view grant_id);
std::string AccessTokenAad(absl::string_view grant_id);
std::string ConsentAad(absl::string_view consent_key);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_MODEL_H_
