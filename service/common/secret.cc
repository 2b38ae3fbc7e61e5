#include "service/common/secret.h"

#include <openssl/crypto.h>

#include <utility>

namespace tokenbroker {

void WipeString(std::string& s) {
  if (s.capacity() > 0) OPENSSL_cleanse(s.data(), s.capacity());
  s.clear();
}

Secret::Secret(std::string&& value) : value_(std::move(value)) {
  // A short string lives in the source's own buffer (SSO) and was copied, not
  // moved: wipe whatever the source still holds.
  WipeString(value);
}

Secret Secret::CopyFrom(absl::string_view value) {
  std::string copy(value);
  return Secret(std::move(copy));
}

Secret::Secret(Secret&& other) noexcept : value_(std::move(other.value_)) { WipeString(other.value_); }

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    WipeString(value_);
    value_ = std::move(other.value_);
    WipeString(other.value_);
  }
  return *this;
}

Secret::~Secret() { WipeString(value_); }

void Secret::Clear() { WipeString(value_); }

bool operator==(const Secret& a, const Secret& b) { return ConstantTimeEquals(a.value_, b.value_); }

const Secret& SharedSecret::Empty() {
  static const Secret* empty = new Secret();
  return *empty;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tokenbroker
