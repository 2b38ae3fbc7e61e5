#include "service/common/sasl.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

Secret Encode(std::string raw) {
  std::string encoded;
  absl::Base64Escape(raw, &encoded);
  WipeString(raw);
  return Secret(std::move(encoded));
}

}  // namespace

void SaslXoauth2Into(absl::string_view user, const Secret& token, std::string* out) {
  // The unencoded string, in a buffer this thread keeps (wiped after each
  // use): a token is often larger than glibc caches per thread, and this runs
  // on every token cache hit.
  thread_local std::string raw;
  absl::StrAppend(&raw, "user=", user, "\x01", "auth=Bearer ", token.Reveal(), "\x01\x01");
  absl::Base64Escape(raw, out);
  WipeString(raw);
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
  return Encode(absl::StrCat("n,a=", authzid, ",\x01host=", host, "\x01port=", port, "\x01", "auth=Bearer ",
                             token.Reveal(), "\x01\x01"));
}

}  // namespace tokenbroker
