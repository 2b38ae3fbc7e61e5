#include "service/crypto/keyring.h"

#include <sys/stat.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/files.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'795'776'000);  // 2026-11-27

constexpr char kTwoKeys[] =
    "active: k2\n"
    "keys:\n"
    "  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    "  k2: ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n";

TEST(KeyringTest, ParsesKeysAndTheActiveOne) {
  absl::StatusOr<Keyring> ring = Keyring::Parse(kTwoKeys, "test");
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->active_key_id(), "k2");
  EXPECT_THAT(ring->key_ids(), ::testing::ElementsAre("k1", "k2"));
  ASSERT_NE(ring->Find("k1"), nullptr);
  EXPECT_EQ(ring->Find("k1")->size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(ring->Find("k1")->Reveal()[31]), 31);
  EXPECT_EQ(ring->Find("k3"), nullptr);
}

TEST(KeyringTest, GeneratedKeyringRoundTrips) {
  absl::StatusOr<Keyring> ring = Keyring::Generate(kNow);
  ASSERT_TRUE(ring.ok());
  EXPECT_THAT(ring->active_key_id(), ::testing::MatchesRegex("k20261127-[0-9a-f]{4}"));
  absl::StatusOr<Keyring> again = Keyring::Parse(ring->Serialize(), "roundtrip");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->active_key_id(), ring->active_key_id());
  EXPECT_TRUE(*again->Find(ring->active_key_id()) == *ring->Find(ring->active_key_id()));
  // Two generated keyrings never share a key.
  absl::StatusOr<Keyring> other = Keyring::Generate(kNow);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other->Find(other->active_key_id()) == *ring->Find(ring->active_key_id()));
}

TEST(KeyringTest, RejectsMalformedKeyrings) {
  auto error = [](const std::string& yaml) { return std::string(Keyring::Parse(yaml, "k.yaml").status().message()); };
  EXPECT_THAT(error("active: k9\nkeys:\n  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"),
              HasSubstr("the active key `k9` is not among `keys`"));
  EXPECT_THAT(error("active: k1\nkeys:\n  k1: c2hvcnQ=\n"), HasSubstr("exactly 32 bytes"));
  EXPECT_THAT(error("active: k1\nkeys:\n  k1: '%%%'\n"), HasSubstr("exactly 32 bytes"));
  EXPECT_THAT(error("active: k1\nkeys: {}\n"), HasSubstr("`keys` must map key ids"));
  EXPECT_THAT(error("active: k1\nextra: 1\n"), HasSubstr("unknown key `extra`"));
  EXPECT_THAT(error("active: 'bad id'\nkeys:\n  'bad id': AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"),
              HasSubstr("key id `bad id`"));
  EXPECT_THAT(error("[1, 2]"), HasSubstr("keyring k.yaml: expected keys"));
}

TEST(KeyringTest, ErrorsNeverContainKeyMaterial) {
  const std::string key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  absl::Status s = Keyring::Parse("active: k1\nkeys:\n  k2: " + key + "\n", "k.yaml").status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr(key)));
}

TEST(KeyringTest, LoadOrCreateCreatesAPrivateFileOnce) {
  testing::TempDir dir;
  const std::string path = dir.File("var/keyring.yaml");
  bool created = false;
  absl::StatusOr<Keyring> first = Keyring::LoadOrCreate(path, true, kNow, &created);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(created);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<Keyring> second = Keyring::LoadOrCreate(path, true, kNow, &created);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(second->active_key_id(), first->active_key_id());
}

TEST(KeyringTest, AMissingKeyringIsFatalWithoutCreateIfMissing) {
  testing::TempDir dir;
  absl::Status s = Keyring::LoadOrCreate(dir.File("keyring.yaml"), false, kNow).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr(dir.File("keyring.yaml") + " does not exist"));
}

TEST(KeyringTest, RefusesAKeyFileOthersCanRead) {
  testing::TempDir dir;
  const std::string path = dir.WriteFile("keyring.yaml", kTwoKeys, 0644);
  absl::Status s = Keyring::LoadFile(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has mode 0644"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("chmod 600 " + path));
  chmod(path.c_str(), 0640);  // group-readable: allowed (Kubernetes fsGroup)
  EXPECT_TRUE(Keyring::LoadFile(path).ok());
  chmod(path.c_str(), 0400);
  EXPECT_TRUE(Keyring::LoadFile(path).ok());
}

}  // namespace
}  // namespace tokenbroker
