// libFuzzer target for what identity providers send back: token endpoint
// replies (RFC 6749 section 5 with Microsoft's error_codes, Google's and
// oidc-provider's shapes) and the JSON reader under them. The first byte
// picks the HTTP status. Built with clang by scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/common/json.h"
#include "service/idp/oauth_reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr int kStatuses[] = {200, 400, 401, 403, 429, 500, 503, 302};
  tokenbroker::HttpResponse response;
  response.status = kStatuses[data[0] % 8];
  response.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 0x80) response.headers["retry-after"] = response.body.substr(0, 12);
  tokenbroker::TokenReply reply = tokenbroker::ParseTokenReply(response, absl::FromUnixSeconds(1'800'000'000));
  (void)reply;
  (void)tokenbroker::ParseJsonObject(response.body, "fuzz");
  return 0;
}
