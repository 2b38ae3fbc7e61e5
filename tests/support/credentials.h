// Credentials as the vault takes them, for tests and benchmarks that enrol an
// app.
#ifndef TOKENBROKER_TESTS_SUPPORT_CREDENTIALS_H_
#define TOKENBROKER_TESTS_SUPPORT_CREDENTIALS_H_

#include <string>
#include <vector>

#include "service/vault/vault.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {

// One client secret `secret` with id `id`, expiring at `not_after`.
inline CredentialInput ClientSecretCredential(const std::string& id, const std::string& secret, absl::Time not_after) {
  CredentialInput c;
  c.id = id;
  c.secret = Secret::CopyFrom(secret);
  c.not_after = not_after;
  return c;
}

// The same, as the list CreateApp takes.
inline std::vector<CredentialInput> ClientSecretCredentials(const std::string& id, const std::string& secret,
                                                            absl::Time not_after) {
  std::vector<CredentialInput> credentials;
  credentials.push_back(ClientSecretCredential(id, secret, not_after));
  return credentials;
}

// A certificate credential from a certificate and its key made by the test.
inline CredentialInput CertificateCredential(const std::string& id, const CertificateFiles& files) {
  CredentialInput c;
  c.id = id;
  c.kind = CredentialKind::kCertificate;
  c.certificate_pem = ReadFile(files.certificate);
  c.secret = Secret::CopyFrom(ReadFile(files.private_key));
  return c;
}

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_CREDENTIALS_H_
