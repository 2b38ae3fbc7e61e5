#include "service/authz/caller_identity.h"

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"
#include "service/common/time_util.h"
#include "service/crypto/openssl_ptr.h"
#include "service/crypto/random.h"

namespace tokenbroker {
namespace {

constexpr size_t kMinBearerTokenLength = 32;
constexpr size_t kMaxCachedCertificates = 1024;

std::string Asn1String(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
}

}  // namespace

absl::StatusOr<std::string> CertificateIdentity(absl::string_view pem) {
  OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  OpenSslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return absl::InvalidArgumentError("the client certificate cannot be read");
  OpenSslPtr<GENERAL_NAMES> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  std::string dns;
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type == GEN_URI) {
        std::string uri = Asn1String(name->d.uniformResourceIdentifier);
        if (absl::StartsWith(uri, "spiffe://")) return uri;
      } else if (name->type == GEN_DNS && dns.empty()) {
        dns = Asn1String(name->d.dNSName);
      }
    }
  }
  if (!dns.empty()) return absl::StrCat("dns:", dns);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index >= 0) {
    std::string cn = Asn1String(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
    if (!cn.empty()) return absl::StrCat("cn:", cn);
  }
  return absl::InvalidArgumentError("the client certificate has no SPIFFE ID, DNS name or common name");
}

absl::StatusOr<std::unique_ptr<IdentityResolver>> IdentityResolver::Create(const config::v1::AuthConfig& auth,
                                                                           const Clock& clock) {
  std::unique_ptr<IdentityResolver> r(new IdentityResolver());
  r->local_caller_ = auth.local_caller();
  for (int i = 0; i < auth.bearer_tokens_size(); ++i) {
    const auto& t = auth.bearer_tokens(i);
    const std::string key = absl::StrCat("auth.bearer_tokens[", i, "].token_file");
    absl::StatusOr<Secret> token = ReadSecretFile(t.token_file());
    if (!token.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": ", token.status().message()));
    const absl::string_view value = absl::StripAsciiWhitespace(token->Reveal());
    if (value.size() < kMinBearerTokenLength) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": the token must be at least ", kMinBearerTokenLength,
                                                     " characters (for example: openssl rand -hex 32)"));
    }
    if (t.identity().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("auth.bearer_tokens[", i, "].identity: must not be empty"));
    }
    r->static_tokens_.push_back({t.identity(), Sha256(value)});
  }
  if (auth.has_service_account_tokens()) {
    const auto& sa = auth.service_account_tokens();
    if (sa.audiences().empty()) {
      return absl::InvalidArgumentError("auth.service_account_tokens.audiences: at least one audience");
    }
    if (sa.jwks_file().empty() == sa.jwks_url().empty()) {
      return absl::InvalidArgumentError("auth.service_account_tokens: set exactly one of jwks_file and jwks_url");
    }
    ServiceAccountTokenOptions options;
    options.issuer = sa.issuer();
    options.audiences = {sa.audiences().begin(), sa.audiences().end()};
    if (sa.has_jwks_refresh_interval()) options.refresh_interval = FromProtoDuration(sa.jwks_refresh_interval());
    if (sa.has_leeway()) options.leeway = FromProtoDuration(sa.leeway());
    std::unique_ptr<JwksSource> source;
    if (!sa.jwks_file().empty()) {
      source = JwksFile(sa.jwks_file());
    } else {
      CurlOptions http;
      http.ca_file = sa.jwks_ca_file();
      r->jwks_http_ = std::make_unique<CurlHttpClient>(http);
      source = JwksUrl(*r->jwks_http_, sa.jwks_url(), sa.jwks_bearer_token_file());
    }
    r->service_accounts_ = std::make_unique<ServiceAccountTokenVerifier>(std::move(options), std::move(source), clock);
  }
  return r;
}

absl::StatusOr<CallerIdentity> IdentityResolver::Resolve(const CallerCredentials& credentials) {
  if (!credentials.authorization.empty()) {
    absl::string_view value = absl::StripAsciiWhitespace(credentials.authorization);
    if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
      return absl::UnauthenticatedError("the authorization header must be \"Bearer <token>\"");
    }
    return FromBearer(absl::StripAsciiWhitespace(value.substr(7)));
  }
  if (!credentials.peer_certificate_pem.empty()) {
    ASSIGN_OR_RETURN(std::string name, FromCertificate(credentials.peer_certificate_pem));
    return CallerIdentity{std::move(name), "certificate"};
  }
  if (credentials.plaintext && !local_caller_.empty()) return CallerIdentity{local_caller_, "local"};
  return absl::UnauthenticatedError(
      "no caller identity: present a client certificate or an authorization: Bearer token");
}

absl::StatusOr<CallerIdentity> IdentityResolver::FromBearer(absl::string_view token) {
  if (!static_tokens_.empty()) {
    const std::string digest = Sha256(token);
    // Every configured token is compared, in constant time: how long this
    // takes says nothing about which token was close.
    const StaticToken* match = nullptr;
    for (const StaticToken& t : static_tokens_) {
      if (CRYPTO_memcmp(t.digest.data(), digest.data(), digest.size()) == 0) match = &t;
    }
    if (match != nullptr) return CallerIdentity{match->identity, "bearer"};
  }
  if (service_accounts_ != nullptr && std::count(token.begin(), token.end(), '.') == 2) {
    absl::StatusOr<std::string> subject = service_accounts_->Verify(token);
    if (!subject.ok()) {
      return absl::Status(subject.status().code(),
                          absl::StrCat("service-account token refused: ", subject.status().message()));
    }
    return CallerIdentity{std::move(*subject), "service-account"};
  }
  return absl::UnauthenticatedError("the bearer token is not one this broker knows");
}

absl::StatusOr<std::string> IdentityResolver::FromCertificate(absl::string_view pem) {
  {
    absl::MutexLock lock(&mu_);
    auto it = certificates_.find(pem);
    if (it != certificates_.end()) return it->second;
  }
  absl::StatusOr<std::string> name = CertificateIdentity(pem);
  if (!name.ok()) return absl::UnauthenticatedError(name.status().message());
  absl::MutexLock lock(&mu_);
  if (certificates_.size() >= kMaxCachedCertificates) certificates_.clear();
  certificates_.emplace(std::string(pem), *name);
  return name;
}

}  // namespace tokenbroker
