// Sealer: AES-256-GCM sealing of secrets with the keyring's keys.
//
// Seal(plaintext, associated_data) uses the active key and a fresh random
// 96-bit nonce. The associated data names the record and field the value
// belongs to ("grant/shared-support/refresh_token"): a sealed value copied to
// another row or field fails to open. The sealed form carries its key id, so
// old keys keep opening old values until `keys rotate` re-seals them.
//
// Sealed layout: "TB" 0x01 | key id length (1 byte) | key id | nonce (12) |
// ciphertext | tag (16).
//
// Thread-safe; the keyring can be swapped at run time (reload).
#ifndef TOKENBROKER_SERVICE_CRYPTO_SEALER_H_
#define TOKENBROKER_SERVICE_CRYPTO_SEALER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/common/secret.h"
#include "service/crypto/keyring.h"

namespace tokenbroker {

class Sealer {
 public:
  explicit Sealer(std::shared_ptr<const Keyring> keyring);

  absl::StatusOr<std::string> Seal(absl::string_view plaintext, absl::string_view associated_data) const;
  // DATA_LOSS naming `associated_data` when the value was tampered with, sealed
  // for another record, or sealed under a different key with the same id;
  // FAILED_PRECONDITION when its key is not in the keyring.
  absl::StatusOr<Secret> Open(absl::string_view sealed, absl::string_view associated_data) const;

  // The key id a sealed value was sealed with (INVALID_ARGUMENT when it is not
  // a sealed value).
  static absl::StatusOr<std::string> KeyIdOf(absl::string_view sealed);

  std::string active_key_id() const;
  void ReplaceKeyring(std::shared_ptr<const Keyring> keyring);
  std::shared_ptr<const Keyring> keyring() const;

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const Keyring> keyring_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_SEALER_H_
