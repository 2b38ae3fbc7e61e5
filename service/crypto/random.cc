#include "service/crypto/random.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/escaping.h"
#include "service/common/secret.h"

namespace tokenbroker {
namespace {

std::string RandomBytes(size_t bytes) {
  std::string out(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(bytes)) != 1) {
    std::abort();  // no randomness: no safe way on
  }
  return out;
}

}  // namespace

std::string RandomBase64Url(size_t bytes) {
  std::string raw = RandomBytes(bytes);
  std::string out;
  absl::WebSafeBase64Escape(raw, &out);
  WipeString(raw);
  return out;
}

std::string RandomHex(size_t bytes) {
  std::string raw = RandomBytes(bytes);
  std::string out = absl::BytesToHexString(raw);
  WipeString(raw);
  return out;
}

std::string Sha256(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

}  // namespace tokenbroker
