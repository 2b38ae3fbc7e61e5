#include "service/common/base64.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

std::string Encoded(Base64Kernel kernel, std::initializer_list<absl::string_view> pieces) {
  std::string out = "left over from before";
  Base64OfPieces(kernel, pieces, &out);
  return out;
}

// Random bytes of every length up to several AVX2 steps, and every way of
// cutting the input into three pieces against base64's 3-byte groups and the
// 24-byte steps: both kernels give what absl's one-buffer encoder gives.
TEST(Base64Test, BothKernelsAgreeWithTheStandardEncoderForEveryLengthAndCut) {
  std::mt19937 random(20261204);
  std::string input;
  for (size_t size = 0; size <= 130; ++size) {
    const std::string expected = absl::Base64Escape(input);
    for (size_t first = 0; first <= std::min<size_t>(size, 5); ++first) {
      for (size_t last = 0; first + last <= size && last <= 4; ++last) {
        const absl::string_view a(input.data(), first);
        const absl::string_view b(input.data() + first, size - first - last);
        const absl::string_view c(input.data() + size - last, last);
        for (Base64Kernel kernel : {Base64Kernel::kScalar, Base64Kernel::kAvx2}) {
          ASSERT_EQ(Encoded(kernel, {a, b, c}), expected)
              << "size " << size << " cut at " << first << " and " << size - last << " kernel "
              << static_cast<int>(kernel);
        }
      }
    }
    input += static_cast<char>(random() & 0xff);
  }
}

// The table lookups cover the 64 characters: each 6-bit value in each of the
// four places of a group, in a piece long enough for the 24-byte steps.
TEST(Base64Test, EverySixBitValueInEveryPlaceOfAGroup) {
  std::string input;
  for (int place = 0; place < 4; ++place) {
    for (int value = 0; value < 64; ++value) {
      const uint32_t group = static_cast<uint32_t>(value) << (18 - 6 * place);
      input += static_cast<char>(group >> 16);
      input += static_cast<char>((group >> 8) & 0xff);
      input += static_cast<char>(group & 0xff);
    }
  }
  for (Base64Kernel kernel : {Base64Kernel::kScalar, Base64Kernel::kAvx2}) {
    EXPECT_EQ(Encoded(kernel, {input}), absl::Base64Escape(input));
    EXPECT_EQ(Encoded(kernel, {"x", input, "yz"}), absl::Base64Escape(absl::StrCat("x", input, "yz")));
  }
  // All 0xff and all zero bytes: the ends of the ranges.
  for (char fill : {'\0', '\xff'}) {
    const std::string same(100, fill);
    for (Base64Kernel kernel : {Base64Kernel::kScalar, Base64Kernel::kAvx2}) {
      EXPECT_EQ(Encoded(kernel, {same}), absl::Base64Escape(same));
    }
  }
}

// A token-sized piece, as a cache hit encodes it, with the default kernel.
TEST(Base64Test, TheDefaultKernelEncodesATokenSizedPiece) {
  std::mt19937 random(7);
  std::string token(1650, '\0');
  for (char& c : token) c = static_cast<char>(random() & 0xff);
  std::string out;
  Base64OfPieces({"user=robot@contoso.com\x01" "auth=Bearer ", token, "\x01\x01"}, &out);
  EXPECT_EQ(out, absl::Base64Escape(absl::StrCat("user=robot@contoso.com\x01" "auth=Bearer ", token, "\x01\x01")));
#if defined(__x86_64__)
  EXPECT_EQ(BestBase64Kernel(), __builtin_cpu_supports("avx2") ? Base64Kernel::kAvx2 : Base64Kernel::kScalar);
#endif
}

}  // namespace
}  // namespace tokenbroker
