#include "service/common/sasl.h"

#include <openssl/crypto.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The two base64 characters of every 12-bit value: three bytes become four
// characters in two lookups.
struct Base64Pairs {
  char pair[4096][2];
};
constexpr Base64Pairs MakeBase64Pairs() {
  Base64Pairs t{};
  for (int i = 0; i < 4096; ++i) {
    t.pair[i][0] = kBase64[i >> 6];
    t.pair[i][1] = kBase64[i & 63];
  }
  return t;
}
constexpr Base64Pairs kBase64Pairs = MakeBase64Pairs();

// Standard padded base64 (RFC 4648) of `pieces` one after another, written
// into `out` (replacing what it held; its buffer is reused). The plaintext is
// never gathered into one buffer, so there is no copy of the token to wipe
// but the (wiped) bytes carried from one piece to the next. This runs on
// every token cache hit.
void Base64OfPieces(std::initializer_list<absl::string_view> pieces, std::string* out) {
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  out->resize(4 * ((total + 2) / 3));
  char* d = out->data();
  auto three = [&d](const unsigned char* s) {
    const uint32_t v = (uint32_t{s[0]} << 16) | (uint32_t{s[1]} << 8) | s[2];
    std::memcpy(d, kBase64Pairs.pair[v >> 12], 2);
    std::memcpy(d + 2, kBase64Pairs.pair[v & 0xfff], 2);
    d += 4;
  };
  unsigned char carry[3];
  size_t carried = 0;
  for (absl::string_view piece : pieces) {
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    size_t n = piece.size();
    if (carried > 0) {
      while (carried < 3 && n > 0) {
        carry[carried++] = *s++;
        --n;
      }
      if (carried < 3) continue;
      three(carry);
      carried = 0;
    }
    for (; n >= 3; n -= 3, s += 3) three(s);
    while (n > 0) {
      carry[carried++] = *s++;
      --n;
    }
  }
  if (carried > 0) {
    const uint32_t v = (uint32_t{carry[0]} << 16) | (carried > 1 ? uint32_t{carry[1]} << 8 : 0);
    d[0] = kBase64[v >> 18];
    d[1] = kBase64[(v >> 12) & 63];
    d[2] = carried > 1 ? kBase64[(v >> 6) & 63] : '=';
    d[3] = '=';
  }
  OPENSSL_cleanse(carry, sizeof carry);
}

}  // namespace

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
