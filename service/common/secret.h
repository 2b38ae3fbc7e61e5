// Secret: a string that holds a secret (client secret, private key, refresh or
// access token, key material).
//
// It cannot be printed by accident: streaming it writes "[redacted]", the
// logger refuses it at compile time, and getting at the bytes takes an explicit
// Reveal(). Its memory is wiped when it is destroyed or overwritten. Equality
// is constant-time. Move-only, so that copies are deliberate (Clone()).
// Not thread-safe; treat like std::string.
#ifndef TOKENBROKER_SERVICE_COMMON_SECRET_H_
#define TOKENBROKER_SERVICE_COMMON_SECRET_H_

#include <memory>
#include <ostream>
#include <string>
#include "absl/strings/string_view.h"

namespace tokenbroker {

// Overwrites the whole buffer of `s` (including spare capacity) with zeros, in a
// way the compiler may not optimise out, then clears it.
void WipeString(std::string& s);

class Secret {
 public:
  Secret() = default;
  // Takes ownership of `value`; the caller's moved-from string is left empty.
  explicit Secret(std::string&& value);
  // Copies from a view. Prefer the rvalue constructor: the source is not wiped.
  static Secret CopyFrom(absl::string_view value);

  Secret(Secret&& other) noexcept;
  Secret& operator=(Secret&& other) noexcept;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret();

  // The secret bytes. Do not log, store unsealed or put them in a message.
  absl::string_view Reveal() const { return value_; }
  Secret Clone() const { return CopyFrom(value_); }
  bool empty() const { return value_.empty(); }
  size_t size() const { return value_.size(); }
  // Wipes and empties.
  void Clear();

  // Constant-time in the length of the contents.
  friend bool operator==(const Secret& a, const Secret& b);
  friend std::ostream& operator<<(std::ostream& os, const Secret&) { return os << "[redacted]"; }

 private:
  std::string value_;
};

// An immutable Secret shared by several owners (one app token cached for the
// many grants that use it): copying shares it, and it is wiped when the last
// owner lets go. Thread-safe to share; never changed after construction.
class SharedSecret {
 public:
  SharedSecret() = default;
  explicit SharedSecret(Secret value) : value_(std::make_shared<const Secret>(std::move(value))) {}

  absl::string_view Reveal() const { return value_ == nullptr ? absl::string_view() : value_->Reveal(); }
  // Another owner of the same bytes (no copy).
  SharedSecret Clone() const { return *this; }
  // A Secret of its own with the same bytes.
  Secret Copy() const { return Secret::CopyFrom(Reveal()); }
  bool empty() const { return Reveal().empty(); }
  size_t size() const { return Reveal().size(); }
  // For APIs that take a Secret.
  operator const Secret&() const { return value_ == nullptr ? Empty() : *value_; }

  friend std::ostream& operator<<(std::ostream& os, const SharedSecret&) { return os << "[redacted]"; }

 private:
  static const Secret& Empty();
  std::shared_ptr<const Secret> value_;
};

// Constant-time comparison of two byte strings (time depends only on lengths).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_SECRET_H_
