// libFuzzer target for caller credentials: a JWKS document and a JWT checked
// against it (the Kubernetes service-account tokens callers present). The
// input is split at the first NUL into the JWKS and the JWT. Built with
// clang by scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "service/authz/service_account_tokens.h"

namespace {

class FixedJwks final : public tokenbroker::JwksSource {
 public:
  explicit FixedJwks(std::string json) : json_(std::move(json)) {}
  absl::StatusOr<std::string> Fetch() override { return json_; }

 private:
  std::string json_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string jwks = input.substr(0, split);
  const std::string jwt = split == std::string::npos ? input : input.substr(split + 1);
  absl::StatusOr<tokenbroker::JsonWebKeySet> keys = tokenbroker::JsonWebKeySet::Parse(jwks);
  if (keys.ok()) (void)keys->Verify("k1", "RS256", jwt, jwt);
  static tokenbroker::FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  tokenbroker::ServiceAccountTokenOptions options;
  options.issuer = "https://kubernetes.default.svc";
  options.audiences = {"tokenbroker"};
  tokenbroker::ServiceAccountTokenVerifier verifier(options, std::make_unique<FixedJwks>(jwks), clock);
  (void)verifier.Verify(jwt);
  return 0;
}
