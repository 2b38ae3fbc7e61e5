#include "service/authz/service_account_tokens.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/files.h"
#include "service/common/json.h"
#include "service/common/status_macros.h"
#include "service/crypto/openssl_ptr.h"

namespace tokenbroker {
namespace {

bool Base64UrlDecode(absl::string_view in, std::string* out) { return absl::WebSafeBase64Unescape(in, out); }

OpenSslPtr<BIGNUM> Bignum(const std::string& bytes) {
  return OpenSslPtr<BIGNUM>(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr));
}

// An EVP_PKEY from OSSL params built by `fill`.
EVP_PKEY* KeyFromParams(const char* type, const std::function<bool(OSSL_PARAM_BLD*)>& fill) {
  OpenSslPtr<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr || !fill(bld.get())) return nullptr;
  OpenSslPtr<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld.get()));
  OpenSslPtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return nullptr;
  }
  return key;
}

class FileSource final : public JwksSource {
 public:
  explicit FileSource(std::string path) : path_(std::move(path)) {}
  absl::StatusOr<std::string> Fetch() override {
    absl::StatusOr<std::string> text = ReadFileToString(path_);
    if (!text.ok()) return absl::UnavailableError(absl::StrCat("reading the JWKS file: ", text.status().message()));
    return text;
  }

 private:
  const std::string path_;
};

class UrlSource final : public JwksSource {
 public:
  UrlSource(HttpClient& http, std::string url, std::string token_file)
      : http_(http), url_(std::move(url)), token_file_(std::move(token_file)) {}
  absl::StatusOr<std::string> Fetch() override {
    HttpRequest request;
    request.method = "GET";
    request.url = url_;
    request.headers.emplace_back("Accept", "application/json");
    if (!token_file_.empty()) {
      ASSIGN_OR_RETURN(Secret token, ReadSecretFile(token_file_));
      request.headers.emplace_back("Authorization",
                                   absl::StrCat("Bearer ", absl::StripAsciiWhitespace(token.Reveal())));
    }
    absl::StatusOr<HttpResponse> response = http_.Send(request);
    for (auto& [name, value] : request.headers) WipeString(value);
    if (!response.ok()) return response.status();
    if (response->status != 200) {
      return absl::UnavailableError(absl::StrCat("fetching the JWKS from ", url_, ": HTTP ", response->status));
    }
    return std::move(response->body);
  }

 private:
  HttpClient& http_;
  const std::string url_;
  const std::string token_file_;
};

bool AudienceMatches(const google::protobuf::Struct& claims, const std::vector<std::string>& accepted) {
  const google::protobuf::Value* aud = JsonField(claims, "aud");
  if (aud == nullptr) return false;
  auto ok = [&accepted](const std::string& a) {
    for (const std::string& want : accepted) {
      if (a == want) return true;
    }
    return false;
  };
  if (aud->has_string_value()) return ok(aud->string_value());
  if (aud->has_list_value()) {
    for (const auto& v : aud->list_value().values()) {
      if (v.has_string_value() && ok(v.string_value())) return true;
    }
  }
  return false;
}

}  // namespace

struct JsonWebKeySet::Key {
  std::string kty;  // "RSA" or "EC"
  OpenSslPtr<EVP_PKEY> key;
};

std::unique_ptr<JwksSource> JwksFile(std::string path) { return std::make_unique<FileSource>(std::move(path)); }

std::unique_ptr<JwksSource> JwksUrl(HttpClient& http, std::string url, std::string bearer_token_file) {
  return std::make_unique<UrlSource>(http, std::move(url), std::move(bearer_token_file));
}

absl::StatusOr<JsonWebKeySet> JsonWebKeySet::Parse(absl::string_view json) {
  ASSIGN_OR_RETURN(google::protobuf::Struct doc, ParseJsonObject(json, "the JWKS"));
  const google::protobuf::Value* keys = JsonField(doc, "keys");
  if (keys == nullptr || !keys->has_list_value()) {
    return absl::InvalidArgumentError("the JWKS has no \"keys\" array");
  }
  JsonWebKeySet set;
  for (const auto& entry : keys->list_value().values()) {
    if (!entry.has_struct_value()) continue;
    const auto& jwk = entry.struct_value();
    const std::string kid = JsonString(jwk, "kid");
    const std::string kty = JsonString(jwk, "kty");
    const std::string use = JsonString(jwk, "use");
    if (kid.empty() || (!use.empty() && use != "sig")) continue;
    auto key = std::make_shared<Key>();
    key->kty = kty;
    if (kty == "RSA") {
      std::string n, e;
      if (!Base64UrlDecode(JsonString(jwk, "n"), &n) || !Base64UrlDecode(JsonString(jwk, "e"), &e) || n.empty() ||
          e.empty()) {
        continue;
      }
      auto bn_n = Bignum(n), bn_e = Bignum(e);
      key->key.reset(KeyFromParams("RSA", [&](OSSL_PARAM_BLD* b) {
        return OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn_n.get()) == 1 &&
               OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, bn_e.get()) == 1;
      }));
    } else if (kty == "EC" && JsonString(jwk, "crv") == "P-256") {
      std::string x, y;
      if (!Base64UrlDecode(JsonString(jwk, "x"), &x) || !Base64UrlDecode(JsonString(jwk, "y"), &y) || x.size() != 32 ||
          y.size() != 32) {
        continue;
      }
      std::string point = absl::StrCat("\x04", x, y);
      key->key.reset(KeyFromParams("EC", [&](OSSL_PARAM_BLD* b) {
        return OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
               OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1;
      }));
    }
    if (key->key != nullptr) set.keys_[kid] = std::move(key);
  }
  return set;
}

absl::Status JsonWebKeySet::Verify(absl::string_view kid, absl::string_view alg, absl::string_view signing_input,
                                   absl::string_view signature) const {
  auto it = keys_.find(std::string(kid));
  if (it == keys_.end()) return absl::NotFoundError("the token is signed by an unknown key");
  const Key& key = *it->second;
  std::string der_signature;
  if (alg == "RS256" && key.kty == "RSA") {
    der_signature = std::string(signature);
  } else if (alg == "ES256" && key.kty == "EC") {
    if (signature.size() != 64) return absl::UnauthenticatedError("the token's signature is malformed");
    // JWS carries r || s; OpenSSL wants DER.
    OpenSslPtr<ECDSA_SIG> sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 32, nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 32, 32, nullptr);
    if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return absl::InternalError("cannot build an ECDSA signature");
    }
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(sig.get(), &der);
    if (len <= 0) return absl::InternalError("cannot encode an ECDSA signature");
    der_signature.assign(reinterpret_cast<const char*>(der), len);
    OPENSSL_free(der);
  } else {
    return absl::UnauthenticatedError(
        absl::StrCat("the token's algorithm \"", alg.substr(0, 16), "\" does not fit its key (RS256, ES256)"));
  }
  OpenSslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.key.get()) != 1) {
    return absl::InternalError("cannot set up signature verification");
  }
  const int ok =
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der_signature.data()), der_signature.size(),
                       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  if (ok != 1) return absl::UnauthenticatedError("the token's signature is not valid");
  return absl::OkStatus();
}

ServiceAccountTokenVerifier::ServiceAccountTokenVerifier(ServiceAccountTokenOptions options,
                                                         std::unique_ptr<JwksSource> source, const Clock& clock)
    : options_(std::move(options)), source_(std::move(source)), clock_(clock) {}

absl::StatusOr<std::shared_ptr<const JsonWebKeySet>> ServiceAccountTokenVerifier::Keys(absl::string_view kid) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  const bool stale = keys_ == nullptr || now - fetched_ >= options_.refresh_interval;
  const bool unknown_kid = keys_ != nullptr && !keys_->Contains(kid);
  const bool may_refetch = unknown_kid && now - last_kid_fetch_ >= absl::Seconds(10);
  if (stale || may_refetch) {
    if (!stale) last_kid_fetch_ = now;
    absl::StatusOr<std::string> text = source_->Fetch();
    absl::StatusOr<JsonWebKeySet> set =
        text.ok() ? JsonWebKeySet::Parse(*text) : absl::StatusOr<JsonWebKeySet>(text.status());
    if (set.ok()) {
      keys_ = std::make_shared<const JsonWebKeySet>(std::move(*set));
      fetched_ = now;
    } else if (keys_ == nullptr) {
      // Keys fetched before keep being used when a refetch fails.
      return absl::UnavailableError(absl::StrCat("service-account token keys unavailable: ", set.status().message()));
    }
  }
  return keys_;
}

absl::StatusOr<std::string> ServiceAccountTokenVerifier::Verify(absl::string_view jwt) {
  std::vector<absl::string_view> parts = absl::StrSplit(jwt, '.');
  if (parts.size() != 3) return absl::UnauthenticatedError("the bearer token is not a JWT");
  std::string header_json, claims_json, signature;
  if (!Base64UrlDecode(parts[0], &header_json) || !Base64UrlDecode(parts[1], &claims_json) ||
      !Base64UrlDecode(parts[2], &signature)) {
    return absl::UnauthenticatedError("the bearer token is not a JWT");
  }
  absl::StatusOr<google::protobuf::Struct> header = ParseJsonObject(header_json, "the token header");
  if (!header.ok()) return absl::UnauthenticatedError("the bearer token is not a JWT");
  const std::string alg = JsonString(*header, "alg");
  const std::string kid = JsonString(*header, "kid");
  ASSIGN_OR_RETURN(std::shared_ptr<const JsonWebKeySet> keys, Keys(kid));
  const absl::string_view signing_input(jwt.data(), parts[0].size() + 1 + parts[1].size());
  absl::Status verified = keys->Verify(kid, alg, signing_input, signature);
  if (absl::IsNotFound(verified)) return absl::UnauthenticatedError(verified.message());
  RETURN_IF_ERROR(verified);
  // Only a token with a good signature gets its claims read.
  absl::StatusOr<google::protobuf::Struct> claims = ParseJsonObject(claims_json, "the token claims");
  if (!claims.ok()) return absl::UnauthenticatedError("the token's claims are not JSON");
  if (JsonString(*claims, "iss") != options_.issuer) {
    return absl::UnauthenticatedError("the token's issuer is not the configured service-account issuer");
  }
  if (!AudienceMatches(*claims, options_.audiences)) {
    return absl::UnauthenticatedError("the token's audience is not one this broker accepts");
  }
  const absl::Time now = clock_.Now();
  double exp = 0, nbf = 0;
  if (!JsonSeconds(*claims, "exp", &exp)) return absl::UnauthenticatedError("the token has no expiry (exp)");
  if (absl::UnixEpoch() + absl::Seconds(exp) + options_.leeway <= now) {
    return absl::UnauthenticatedError("the token has expired");
  }
  if (JsonSeconds(*claims, "nbf", &nbf) && absl::UnixEpoch() + absl::Seconds(nbf) - options_.leeway > now) {
    return absl::UnauthenticatedError("the token is not valid yet (nbf)");
  }
  std::string sub = JsonString(*claims, "sub");
  if (sub.empty()) return absl::UnauthenticatedError("the token has no subject (sub)");
  return sub;
}

}  // namespace tokenbroker
