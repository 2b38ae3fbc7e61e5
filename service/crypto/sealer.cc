#include "service/crypto/sealer.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

constexpr char kMagic[] = {'T', 'B', 0x01};
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

struct CipherContext {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherContext() { EVP_CIPHER_CTX_free(ctx); }
};

struct ParsedSealed {
  absl::string_view key_id;
  absl::string_view nonce;
  absl::string_view ciphertext;
  absl::string_view tag;
};

bool Parse(absl::string_view sealed, ParsedSealed* out) {
  if (sealed.size() < sizeof kMagic + 1 || sealed.substr(0, sizeof kMagic) != absl::string_view(kMagic, 3)) {
    return false;
  }
  const size_t id_len = static_cast<unsigned char>(sealed[sizeof kMagic]);
  const size_t header = sizeof kMagic + 1 + id_len;
  if (id_len == 0 || sealed.size() < header + kNonceBytes + kTagBytes) return false;
  out->key_id = sealed.substr(sizeof kMagic + 1, id_len);
  out->nonce = sealed.substr(header, kNonceBytes);
  out->ciphertext = sealed.substr(header + kNonceBytes, sealed.size() - header - kNonceBytes - kTagBytes);
  out->tag = sealed.substr(sealed.size() - kTagBytes);
  return true;
}

const unsigned char* U(absl::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

Sealer::Sealer(std::shared_ptr<const Keyring> keyring) : keyring_(std::move(keyring)) {}

std::string Sealer::active_key_id() const {
  absl::MutexLock lock(&mu_);
  return keyring_->active_key_id();
}

void Sealer::ReplaceKeyring(std::shared_ptr<const Keyring> keyring) {
  absl::MutexLock lock(&mu_);
  keyring_ = std::move(keyring);
}

std::shared_ptr<const Keyring> Sealer::keyring() const {
  absl::MutexLock lock(&mu_);
  return keyring_;
}

absl::StatusOr<std::string> Sealer::KeyIdOf(absl::string_view sealed) {
  ParsedSealed parsed;
  if (!Parse(sealed, &parsed)) return absl::InvalidArgumentError("not a sealed value");
  return std::string(parsed.key_id);
}

absl::StatusOr<std::string> Sealer::Seal(absl::string_view plaintext, absl::string_view associated_data) const {
  std::shared_ptr<const Keyring> ring = keyring();
  const std::string& key_id = ring->active_key_id();
  const Secret* key = ring->Find(key_id);
  if (key == nullptr || key->size() != kKeyringKeyBytes) return absl::InternalError("the active key is missing");
  std::string out(kMagic, sizeof kMagic);
  out.push_back(static_cast<char>(key_id.size()));
  out += key_id;
  const size_t nonce_at = out.size();
  out.resize(nonce_at + kNonceBytes + plaintext.size() + kTagBytes);
  unsigned char* nonce = reinterpret_cast<unsigned char*>(&out[nonce_at]);
  if (RAND_bytes(nonce, kNonceBytes) != 1) return absl::InternalError("the system random generator failed");
  unsigned char* ct = nonce + kNonceBytes;
  CipherContext c;
  int len = 0;
  if (c.ctx == nullptr || EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, U(key->Reveal()), nonce) != 1 ||
      EVP_EncryptUpdate(c.ctx, nullptr, &len, U(associated_data), static_cast<int>(associated_data.size())) != 1 ||
      EVP_EncryptUpdate(c.ctx, ct, &len, U(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(c.ctx, ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, ct + plaintext.size()) != 1) {
    return absl::InternalError("AES-256-GCM sealing failed");
  }
  return out;
}

absl::StatusOr<Secret> Sealer::Open(absl::string_view sealed, absl::string_view associated_data) const {
  ParsedSealed parsed;
  if (!Parse(sealed, &parsed)) {
    return absl::DataLossError(absl::StrCat("sealed value of ", associated_data, " is damaged (not a sealed value)"));
  }
  std::shared_ptr<const Keyring> ring = keyring();
  const Secret* key = ring->Find(parsed.key_id);
  if (key == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("sealed value of ", associated_data, " needs key \"",
                                                      parsed.key_id, "\", which is not in the keyring"));
  }
  std::string plain(parsed.ciphertext.size(), '\0');
  CipherContext c;
  int len = 0;
  std::string tag(parsed.tag);
  bool ok = c.ctx != nullptr &&
            EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, U(key->Reveal()), U(parsed.nonce)) == 1 &&
            EVP_DecryptUpdate(c.ctx, nullptr, &len, U(associated_data), static_cast<int>(associated_data.size())) == 1 &&
            EVP_DecryptUpdate(c.ctx, reinterpret_cast<unsigned char*>(plain.data()), &len, U(parsed.ciphertext),
                              static_cast<int>(parsed.ciphertext.size())) == 1 &&
            EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1;
  int final_len = 0;
  ok = ok && EVP_DecryptFinal_ex(c.ctx, reinterpret_cast<unsigned char*>(plain.data()) + len, &final_len) == 1;
  if (!ok) {
    WipeString(plain);
    return absl::DataLossError(absl::StrCat("sealed value of ", associated_data, " does not open with key \"",
                                            parsed.key_id,
                                            "\": it was changed, copied from another record, or the key is wrong"));
  }
  return Secret(std::move(plain));
}

}  // namespace tokenbroker
