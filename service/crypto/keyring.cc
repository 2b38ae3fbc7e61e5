#include "service/crypto/keyring.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"

namespace tokenbroker {

bool IsValidKeyId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

absl::Status CheckKeyFilePermissions(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("keyring file ", path, " does not exist"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("keyring file ", path, " is not a regular file"));
  }
  if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "keyring file %s has mode %04o: other users could read or change the keys; run `chmod 600 %s` "
        "(on Kubernetes mount the Secret with defaultMode: 0440 and the pod's fsGroup)",
        path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

absl::StatusOr<Keyring> Keyring::Parse(absl::string_view yaml, absl::string_view source) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("keyring ", source, ": ", what));
  };
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return error(absl::StrCat("not valid YAML (line ", e.mark.line + 1, ")"));
  }
  if (!root.IsMap()) return error("expected keys `active` and `keys`");
  Keyring ring;
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (key != "active" && key != "keys") return error(absl::StrCat("unknown key `", key, "`; expected active, keys"));
  }
  if (!root["active"] || !root["active"].IsScalar()) return error("`active` must name the key that seals new values");
  ring.active_ = root["active"].Scalar();
  const YAML::Node keys = root["keys"];
  if (!keys || !keys.IsMap() || keys.size() == 0) return error("`keys` must map key ids to base64 keys");
  for (const auto& kv : keys) {
    const std::string id = kv.first.Scalar();
    if (!IsValidKeyId(id)) return error(absl::StrCat("key id `", id, "` must be 1-64 characters of A-Z a-z 0-9 . _ -"));
    if (!kv.second.IsScalar()) return error(absl::StrCat("key `", id, "` must be a base64 string"));
    std::string raw;
    if (!absl::Base64Unescape(kv.second.Scalar(), &raw) || raw.size() != kKeyringKeyBytes) {
      WipeString(raw);
      return error(absl::StrCat("key `", id, "` must be the base64 of exactly 32 bytes"));
    }
    if (!ring.keys_.emplace(id, Secret(std::move(raw))).second) return error(absl::StrCat("duplicate key id `", id, "`"));
  }
  if (ring.Find(ring.active_) == nullptr) {
    return error(absl::StrCat("the active key `", ring.active_, "` is not among `keys`"));
  }
  return ring;
}

absl::StatusOr<Keyring> Keyring::LoadFile(const std::string& path) {
  RETURN_IF_ERROR(CheckKeyFilePermissions(path));
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  absl::StatusOr<Keyring> ring = Parse(text, path);
  WipeString(text);
  return ring;
}

absl::StatusOr<Keyring> Keyring::Generate(absl::Time now) {
  unsigned char suffix[2];
  std::string raw(kKeyringKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(raw.size())) != 1 ||
      RAND_bytes(suffix, sizeof suffix) != 1) {
    WipeString(raw);
    return absl::InternalError("the system random generator failed");
  }
  Keyring ring;
  ring.active_ = absl::StrFormat("k%s-%02x%02x", absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()), suffix[0],
                                 suffix[1]);
  ring.keys_.emplace(ring.active_, Secret(std::move(raw)));
  return ring;
}

absl::StatusOr<Keyring> Keyring::WithNewActiveKey(absl::Time now) const {
  ASSIGN_OR_RETURN(Keyring fresh, Generate(now));
  if (keys_.count(fresh.active_)) return absl::InternalError("generated a key id that exists; try again");
  Keyring out;
  for (const auto& [id, key] : keys_) out.keys_.emplace(id, key.Clone());
  out.active_ = fresh.active_;
  out.keys_.emplace(fresh.active_, fresh.keys_.begin()->second.Clone());
  return out;
}

absl::StatusOr<Keyring> Keyring::WithoutKey(absl::string_view id) const {
  if (id == active_) {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", id, "\" is the active key; add a new key and run `keys rotate` first"));
  }
  if (Find(id) == nullptr) return absl::NotFoundError(absl::StrCat("the keyring has no key \"", id, "\""));
  Keyring out;
  out.active_ = active_;
  for (const auto& [key_id, key] : keys_) {
    if (key_id != id) out.keys_.emplace(key_id, key.Clone());
  }
  return out;
}

std::string Keyring::Serialize() const {
  std::string out =
      "# tokenbroker keyring. Secret: whoever holds this file can open every stored secret.\n"
      "# Keep a backup in a safe place; without it the stored secrets are lost.\n";
  absl::StrAppend(&out, "active: ", active_, "\nkeys:\n");
  for (const auto& [id, key] : keys_) {
    std::string encoded = absl::Base64Escape(key.Reveal());
    absl::StrAppend(&out, "  ", id, ": ", encoded, "\n");
    WipeString(encoded);
  }
  return out;
}

absl::StatusOr<Keyring> Keyring::LoadOrCreate(const std::string& path, bool create_if_missing, absl::Time now,
                                              bool* created) {
  if (created != nullptr) *created = false;
  struct stat st;
  if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    if (!create_if_missing) {
      return absl::FailedPreconditionError(absl::StrCat(
          "keyring file ", path,
          " does not exist; restore it from your backup or mount its Secret (only a local configuration may set "
          "keys.create_if_missing)"));
    }
    ASSIGN_OR_RETURN(Keyring fresh, Generate(now));
    RETURN_IF_ERROR(MakeDirectories(DirName(path)));
    std::string text = fresh.Serialize();
    absl::Status written = WriteFileAtomically(path, text, 0600, /*exclusive=*/true);
    WipeString(text);
    if (!written.ok() && written.code() != absl::StatusCode::kAlreadyExists) return written;
    if (written.ok() && created != nullptr) *created = true;
  }
  return LoadFile(path);
}

const Secret* Keyring::Find(absl::string_view id) const {
  auto it = keys_.find(id);
  return it == keys_.end() ? nullptr : &it->second;
}

std::vector<std::string> Keyring::key_ids() const {
  std::vector<std::string> ids;
  for (const auto& [id, key] : keys_) ids.push_back(id);
  return ids;
}

}  // namespace tokenbroker
