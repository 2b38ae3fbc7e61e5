#include "service/crypto/jwt.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "service/crypto/openssl_ptr.h"

namespace tokenbroker {
namespace {

absl::Status ConfigurePadding(EVP_PKEY_CTX* pctx, JwtAlgorithm algorithm) {
  if (algorithm == JwtAlgorithm::kPs256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      return absl::InternalError("cannot configure RSA-PSS");
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string Base64Url(absl::string_view data) {
  std::string out;
  absl::WebSafeBase64Escape(data, &out);
  return out;
}

absl::StatusOr<Secret> SignJwt(absl::string_view header_json, absl::string_view claims_json, JwtAlgorithm algorithm,
                               const Secret& key_pem) {
  OpenSslPtr<BIO> bio(BIO_new_mem_buf(key_pem.Reveal().data(), static_cast<int>(key_pem.size())));
  OpenSslPtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (key == nullptr || EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) {
    return absl::FailedPreconditionError("the credential's private key is not a usable RSA key");
  }
  std::string signing_input = absl::StrCat(Base64Url(header_json), ".", Base64Url(claims_json));
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.get()) != 1) {
    return absl::InternalError("cannot start signing");
  }
  if (absl::Status s = ConfigurePadding(pctx, algorithm); !s.ok()) return s;
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError("signing failed");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) != 1) {
    return absl::InternalError("signing failed");
  }
  signature.resize(len);
  absl::StrAppend(&signing_input, ".", Base64Url(signature));
  return Secret(std::move(signing_input));
}

absl::Status VerifyJwt(absl::string_view jwt, JwtAlgorithm algorithm, absl::string_view certificate_pem) {
  std::vector<absl::string_view> parts = absl::StrSplit(jwt, '.');
  if (parts.size() != 3) return absl::InvalidArgumentError("not a JWT (three dot-separated parts)");
  std::string signature;
  if (!absl::WebSafeBase64Unescape(parts[2], &signature)) return absl::InvalidArgumentError("bad signature encoding");
  OpenSslPtr<BIO> bio(BIO_new_mem_buf(certificate_pem.data(), static_cast<int>(certificate_pem.size())));
  OpenSslPtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM certificate");
  }
  OpenSslPtr<EVP_PKEY> key(X509_get_pubkey(cert.get()));
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const std::string input = absl::StrCat(parts[0], ".", parts[1]);
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.get()) != 1) {
    return absl::InternalError("cannot start verifying");
  }
  if (absl::Status s = ConfigurePadding(pctx, algorithm); !s.ok()) return s;
  const int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                  reinterpret_cast<const unsigned char*>(input.data()), input.size());
  ERR_clear_error();
  return ok == 1 ? absl::OkStatus() : absl::UnauthenticatedError("the JWT signature does not verify");
}

}  // namespace tokenbroker
