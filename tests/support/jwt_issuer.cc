#include "tests/support/jwt_issuer.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "service/crypto/jwt.h"
#include "service/crypto/openssl_ptr.h"

namespace tokenbroker::testing {
namespace {

OpenSslPtr<EVP_PKEY> LoadKey(const std::string& pem) {
  OpenSslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return OpenSslPtr<EVP_PKEY>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

std::string BignumBytes(const BIGNUM* bn, int width = 0) {
  std::string out(width > 0 ? width : BN_num_bytes(bn), '\0');
  if (width > 0) {
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), width);
  } else {
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  }
  return out;
}

std::string BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1) << name;
  OpenSslPtr<BIGNUM> owned(bn);
  return Base64Url(BignumBytes(bn));
}

}  // namespace

JwtIssuer::JwtIssuer(const TempDir& dir, std::string kid, const std::string& key_type)
    : kid_(std::move(kid)), ec_(key_type == "ec") {
  CertificateFiles files = MakeSelfSignedCertificate(dir, "issuer-" + kid_, 30, key_type);
  key_pem_ = ReadFile(files.private_key);
}

std::string JwtIssuer::Jwks() const {
  auto key = LoadKey(key_pem_);
  if (!ec_) {
    return absl::StrCat(R"({"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":")", kid_, R"(","n":")",
                        BnParam(key.get(), OSSL_PKEY_PARAM_RSA_N), R"(","e":")",
                        BnParam(key.get(), OSSL_PKEY_PARAM_RSA_E), R"("}]})");
  }
  unsigned char point[65];
  size_t len = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len), 1);
  const std::string p(reinterpret_cast<const char*>(point), len);
  return absl::StrCat(R"({"keys":[{"kty":"EC","use":"sig","alg":"ES256","crv":"P-256","kid":")", kid_, R"(","x":")",
                      Base64Url(p.substr(1, 32)), R"(","y":")", Base64Url(p.substr(33, 32)), R"("}]})");
}

std::string JwtIssuer::Sign(const std::string& claims_json) const {
  const std::string header = absl::StrCat(R"({"alg":")", ec_ ? "ES256" : "RS256", R"(","kid":")", kid_, R"("})");
  if (!ec_) {
    absl::StatusOr<Secret> jwt = SignJwt(header, claims_json, JwtAlgorithm::kRs256, Secret::CopyFrom(key_pem_));
    EXPECT_TRUE(jwt.ok()) << jwt.status();
    return jwt.ok() ? std::string(jwt->Reveal()) : "";
  }
  const std::string input = absl::StrCat(Base64Url(header), ".", Base64Url(claims_json));
  auto key = LoadKey(key_pem_);
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()), 1);
  size_t len = 0;
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string der(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  OpenSslPtr<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
  const std::string raw = BignumBytes(ECDSA_SIG_get0_r(sig.get()), 32) + BignumBytes(ECDSA_SIG_get0_s(sig.get()), 32);
  return absl::StrCat(input, ".", Base64Url(raw));
}

std::string JwtIssuer::ServiceAccountToken(const std::string& issuer, const std::string& ns, const std::string& name,
                                           const std::vector<std::string>& audiences, absl::Time issued,
                                           absl::Duration lifetime) const {
  std::vector<std::string> quoted;
  for (const std::string& a : audiences) quoted.push_back(absl::StrCat("\"", a, "\""));
  const int64_t iat = absl::ToUnixSeconds(issued);
  return Sign(absl::StrCat(R"({"aud":[)", absl::StrJoin(quoted, ","), R"(],"exp":)",
                           absl::ToUnixSeconds(issued + lifetime), R"(,"iat":)", iat, R"(,"iss":")", issuer,
                           R"(","kubernetes.io":{"namespace":")", ns, R"(","serviceaccount":{"name":")", name,
                           R"(","uid":"0b5f6b0e-1c1c-4c1c-9c1c-0b5f6b0e1c1c"}},"nbf":)", iat,
                           R"(,"sub":"system:serviceaccount:)", ns, ":", name, R"("})"));
}

}  // namespace tokenbroker::testing
