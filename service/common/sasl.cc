#include "service/common/sasl.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "service/common/base64.h"

namespace tokenbroker {

void SaslXoauth2Into(absl::string_view user, const Secret& token, std::string* out) {
  Base64OfPieces({"user=", user, "\x01" "auth=Bearer ", token.Reveal(), "\x01\x01"}, out);
}

Secret SaslXoauth2(absl::string_view user, const Secret& token) {
  std::string encoded;
  SaslXoauth2Into(user, token, &encoded);
  return Secret(std::move(encoded));
}

Secret SaslOauthbearer(absl::string_view user, absl::string_view host, int port, const Secret& token) {
  std::string authzid;
  for (char c : user) {
    if (c == ',') {
      authzid += "=2C";
    } else if (c == '=') {
      authzid += "=3D";
    } else {
      authzid += c;
    }
  }
  const std::string port_text = absl::StrCat(port);
  std::string encoded;
  Base64OfPieces({"n,a=", authzid, ",\x01host=", host, "\x01port=", port_text, "\x01" "auth=Bearer ", token.Reveal(),
                  "\x01\x01"},
                 &encoded);
  return Secret(std::move(encoded));
}

}  // namespace tokenbroker
