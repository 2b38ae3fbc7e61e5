// Reading X.509 certificates, RSA private keys and Google service-account key
// files, for app credentials. Pure functions; thread-safe.
#ifndef TOKENBROKER_SERVICE_CRYPTO_CERTIFICATE_H_
#define TOKENBROKER_SERVICE_CRYPTO_CERTIFICATE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/common/secret.h"

namespace tokenbroker {

struct CertificateInfo {
  absl::Time not_before;
  absl::Time not_after;
  // base64url (no padding) of the SHA-1 / SHA-256 of the DER certificate: the
  // JWT `x5t` and `x5t#S256` header values.
  std::string thumbprint_sha1;
  std::string thumbprint_sha256;
  // RFC 2253 subject, for example "CN=tokenbroker,O=Contoso".
  std::string subject;
};

// INVALID_ARGUMENT when `pem` holds no certificate.
absl::StatusOr<CertificateInfo> ParseCertificatePem(absl::string_view pem);

// OK when `key_pem` is an unencrypted private key (PKCS#8, PKCS#1 or SEC1; RSA
// or EC, as a TLS server certificate from cert-manager may be) that belongs to
// the certificate; INVALID_ARGUMENT saying which is wrong otherwise. Never
// echoes key material.
absl::Status CheckPrivateKeyMatchesCertificate(absl::string_view certificate_pem, const Secret& key_pem);
// The same, and the key must be RSA: app credentials sign client assertions
// with PS256 or RS256.
absl::Status CheckRsaPrivateKeyMatchesCertificate(absl::string_view certificate_pem, const Secret& key_pem);

struct ServiceAccountKey {
  std::string client_email;
  std::string private_key_id;
  Secret private_key_pem;
};

// Reads a Google service-account key file (JSON with "type":
// "service_account", "client_email", "private_key").
absl::StatusOr<ServiceAccountKey> ParseServiceAccountKey(const Secret& json);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_CERTIFICATE_H_
