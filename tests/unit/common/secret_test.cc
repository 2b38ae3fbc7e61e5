#include "service/common/secret.h"

#include <sstream>

#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

TEST(SecretTest, StreamsAsRedacted) {
  Secret s(std::string("hunter2-refresh-token"));
  std::ostringstream os;
  os << "token=" << s;
  EXPECT_EQ(os.str(), "token=[redacted]");
}

TEST(SecretTest, RevealReturnsTheBytes) {
  Secret s(std::string("abc\0def", 7));
  EXPECT_EQ(s.Reveal(), absl::string_view("abc\0def", 7));
  EXPECT_EQ(s.size(), 7u);
}

TEST(SecretTest, TakingAStringEmptiesTheSource) {
  std::string source = "short";  // small-string optimisation: copied, then wiped
  Secret s(std::move(source));
  EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): the contract says so
  EXPECT_EQ(s.Reveal(), "short");
}

TEST(SecretTest, MoveLeavesTheSourceEmpty) {
  Secret a(std::string("a long secret value that does not fit inline"));
  Secret b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.Reveal(), "a long secret value that does not fit inline");
  Secret c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.Reveal(), "a long secret value that does not fit inline");
}

TEST(SecretTest, EqualityComparesContents) {
  EXPECT_TRUE(Secret(std::string("x1")) == Secret(std::string("x1")));
  EXPECT_FALSE(Secret(std::string("x1")) == Secret(std::string("x2")));
  EXPECT_FALSE(Secret(std::string("x1")) == Secret(std::string("x12")));
  EXPECT_TRUE(Secret() == Secret());
}

TEST(SecretTest, CloneAndClear) {
  Secret a = Secret::CopyFrom("value");
  Secret b = a.Clone();
  EXPECT_TRUE(a == b);
  a.Clear();
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.Reveal(), "value");
}

TEST(ConstantTimeEqualsTest, ComparesBytes) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(WipeStringTest, ZeroesTheBuffer) {
  std::string s(100, 'k');
  const char* data = s.data();
  WipeString(s);
  EXPECT_TRUE(s.empty());
  // The buffer is still owned by `s` (clear() keeps capacity): check it.
  for (size_t i = 0; i < 100; ++i) ASSERT_EQ(data[i], '\0') << i;
}

}  // namespace
}  // namespace tokenbroker
