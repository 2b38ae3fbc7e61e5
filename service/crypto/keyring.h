// The keyring: the key-encryption keys that seal every stored secret.
//
// A keyring file is YAML:
//   active: k20261127-3fa9
//   keys:
//     k20261127-3fa9: <base64 of 32 random bytes>
//     k20250101-0c1d: <base64 ...>
// Every key stays until no stored value uses it; `active` seals new values.
// The file must not be readable or writable by other users (mode 0600 or
// 0640/0440 with a group; a Kubernetes Secret mounted with defaultMode 0400).
// Immutable after loading; thread-safe.
#ifndef TOKENBROKER_SERVICE_CRYPTO_KEYRING_H_
#define TOKENBROKER_SERVICE_CRYPTO_KEYRING_H_

#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/common/secret.h"

namespace tokenbroker {

inline constexpr size_t kKeyringKeyBytes = 32;

class Keyring {
 public:
  // Parses keyring YAML; `source` names it in errors.
  static absl::StatusOr<Keyring> Parse(absl::string_view yaml, absl::string_view source);
  // Checks the file's permissions, then reads and parses it.
  static absl::StatusOr<Keyring> LoadFile(const std::string& path);
  // As LoadFile; when the file does not exist and `create_if_missing`, first
  // writes a new keyring with one fresh key (mode 0600, parent directories
  // 0700). `created` (optional) reports whether it did.
  static absl::StatusOr<Keyring> LoadOrCreate(const std::string& path, bool create_if_missing, absl::Time now,
                                              bool* created = nullptr);
  // A keyring with one fresh random key, its id derived from `now`.
  static absl::StatusOr<Keyring> Generate(absl::Time now);

  // A copy with one more, fresh key, which becomes the active one.
  absl::StatusOr<Keyring> WithNewActiveKey(absl::Time now) const;
  // A copy without `id`. FAILED_PRECONDITION for the active key, NOT_FOUND for
  // an unknown one.
  absl::StatusOr<Keyring> WithoutKey(absl::string_view id) const;

  // Keyring YAML for this keyring. Contains the keys: write it only to a file
  // of mode 0600 and wipe the string after.
  std::string Serialize() const;

  const std::string& active_key_id() const { return active_; }
  // The key with this id, or nullptr.
  const Secret* Find(absl::string_view id) const;
  std::vector<std::string> key_ids() const;

 private:
  std::string active_;
  std::map<std::string, Secret, std::less<>> keys_;
};

// FAILED_PRECONDITION, with the chmod to run, when `path` is readable or
// writable by other users or is not a regular file.
absl::Status CheckKeyFilePermissions(const std::string& path);

// Key ids: 1-64 characters of [A-Za-z0-9._-].
bool IsValidKeyId(absl::string_view id);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_KEYRING_H_
