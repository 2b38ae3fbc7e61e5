#include "service/crypto/certificate.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/crypto/openssl_ptr.h"

namespace tokenbroker {
namespace {

OpenSslPtr<BIO> MemBio(absl::string_view data) {
  return OpenSslPtr<BIO>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

OpenSslPtr<X509> ReadCertificate(absl::string_view pem) {
  auto bio = MemBio(pem);
  return OpenSslPtr<X509>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

std::string Thumbprint(X509* cert, const EVP_MD* md) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, md, digest, &len);
  std::string out;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<char*>(digest), len), &out);
  return out;
}

}  // namespace

absl::StatusOr<CertificateInfo> ParseCertificatePem(absl::string_view pem) {
  auto cert = ReadCertificate(pem);
  ERR_clear_error();
  if (cert == nullptr) return absl::InvalidArgumentError("no PEM certificate (-----BEGIN CERTIFICATE-----) found");
  CertificateInfo info;
  info.not_before = AsnTime(X509_get0_notBefore(cert.get()));
  info.not_after = AsnTime(X509_get0_notAfter(cert.get()));
  info.thumbprint_sha1 = Thumbprint(cert.get(), EVP_sha1());
  info.thumbprint_sha256 = Thumbprint(cert.get(), EVP_sha256());
  auto bio = OpenSslPtr<BIO>(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  info.subject.assign(data, static_cast<size_t>(len));
  return info;
}

namespace {

absl::StatusOr<OpenSslPtr<EVP_PKEY>> ReadMatchingPrivateKey(absl::string_view certificate_pem, const Secret& key_pem,
                                                           bool rsa_only) {
  auto cert = ReadCertificate(certificate_pem);
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("no PEM certificate (-----BEGIN CERTIFICATE-----) found");
  }
  auto bio = MemBio(key_pem.Reveal());
  // A null password callback: an encrypted key fails instead of prompting.
  OpenSslPtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        "no unencrypted PEM private key found (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)");
  }
  if (rsa_only && EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError("the private key is not an RSA key; client assertions need RSA (PS256/RS256)");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the private key does not belong to the certificate");
  }
  return key;
}

}  // namespace

absl::Status CheckPrivateKeyMatchesCertificate(absl::string_view certificate_pem, const Secret& key_pem) {
  return ReadMatchingPrivateKey(certificate_pem, key_pem, /*rsa_only=*/false).status();
}

absl::Status CheckRsaPrivateKeyMatchesCertificate(absl::string_view certificate_pem, const Secret& key_pem) {
  return ReadMatchingPrivateKey(certificate_pem, key_pem, /*rsa_only=*/true).status();
}

absl::StatusOr<ServiceAccountKey> ParseServiceAccountKey(const Secret& json) {
  google::protobuf::Struct parsed;
  std::string text(json.Reveal());
  auto status = google::protobuf::util::JsonStringToMessage(text, &parsed);
  WipeString(text);
  if (!status.ok()) return absl::InvalidArgumentError("the service-account key is not valid JSON");
  auto field = [&parsed](const std::string& name) -> std::string {
    auto it = parsed.fields().find(name);
    return it == parsed.fields().end() ? "" : it->second.string_value();
  };
  if (field("type") != "service_account") {
    return absl::InvalidArgumentError("the key file's \"type\" is not \"service_account\"");
  }
  ServiceAccountKey key;
  key.client_email = field("client_email");
  key.private_key_id = field("private_key_id");
  std::string pem = field("private_key");
  key.private_key_pem = Secret(std::move(pem));
  // The parsed copy of the key lives in the Struct: wipe it.
  for (auto& [name, value] : *parsed.mutable_fields()) {
    if (value.has_string_value()) WipeString(*value.mutable_string_value());
  }
  if (key.client_email.empty()) return absl::InvalidArgumentError("the service-account key has no \"client_email\"");
  if (key.private_key_pem.empty()) return absl::InvalidArgumentError("the service-account key has no \"private_key\"");
  auto bio = MemBio(key.private_key_pem.Reveal());
  OpenSslPtr<EVP_PKEY> pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (pkey == nullptr || EVP_PKEY_base_id(pkey.get()) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError("the service-account key's \"private_key\" is not an RSA private key");
  }
  return key;
}

}  // namespace tokenbroker
