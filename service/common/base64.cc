#include "service/common/base64.h"

#include <openssl/crypto.h>

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TOKENBROKER_BASE64_AVX2 1
#endif

namespace tokenbroker {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The two base64 characters of every 12-bit value: three bytes become four
// characters in two lookups.
struct Base64Pairs {
  char pair[4096][2];
};
constexpr Base64Pairs MakeBase64Pairs() {
  Base64Pairs t{};
  for (int i = 0; i < 4096; ++i) {
    t.pair[i][0] = kBase64[i >> 6];
    t.pair[i][1] = kBase64[i & 63];
  }
  return t;
}
constexpr Base64Pairs kBase64Pairs = MakeBase64Pairs();

#ifdef TOKENBROKER_BASE64_AVX2
// 24 bytes become 32 characters per step: each 128-bit half takes 12 bytes,
// a shuffle puts each 3-byte group in its own 32-bit lane, two multiplies
// move the four 6-bit values into four bytes, and a 16-entry table maps
// each value's range to its ASCII offset (W. Muła and D. Lemire, "Faster
// Base64 Encoding and Decoding using AVX2 Instructions", 2018). Encodes while
// 28 bytes are left (each half loads 16), returns how many it took.
__attribute__((target("avx2"))) size_t EncodeBlocksAvx2(const unsigned char* s, size_t n, char* d) {
  // In each half: bytes [b a c b] of every group [a b c], so that the 16-bit
  // words are (a,b) and (b,c), high byte first.
  const __m256i shuffle = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,  //
                                           1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
  // The first and third values: a>>2 from (a,b), ((b&15)<<2)|(c>>6) from
  // (b,c), each shifted down to a byte's low bits by a high multiply.
  const __m256i mask_0_2 = _mm256_set1_epi32(0x0fc0fc00);
  const __m256i shift_0_2 = _mm256_set1_epi32(0x04000040);
  // The second and fourth: ((a&3)<<4)|(b>>4) and c&63, shifted up into the
  // odd bytes by a low multiply.
  const __m256i mask_1_3 = _mm256_set1_epi32(0x003f03f0);
  const __m256i shift_1_3 = _mm256_set1_epi32(0x01000010);
  // Value ranges 0-25, 26-51, 52-61, 62, 63 become table indices 0, 1,
  // 2-11, 12, 13; the table holds what to add to get 'A'..'Z', 'a'..'z',
  // '0'..'9', '+', '/'.
  const __m256i offsets = _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0,  //
                                           65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
  const __m256i above_51 = _mm256_set1_epi8(51);
  const __m256i above_25 = _mm256_set1_epi8(25);
  size_t taken = 0;
  for (; n - taken >= 28; taken += 24, d += 32) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + taken));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + taken + 12));
    const __m256i in = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), shuffle);
    const __m256i values =
        _mm256_or_si256(_mm256_mulhi_epu16(_mm256_and_si256(in, mask_0_2), shift_0_2),
                        _mm256_mullo_epi16(_mm256_and_si256(in, mask_1_3), shift_1_3));
    __m256i index = _mm256_subs_epu8(values, above_51);
    index = _mm256_sub_epi8(index, _mm256_cmpgt_epi8(values, above_25));
    const __m256i ascii = _mm256_add_epi8(values, _mm256_shuffle_epi8(offsets, index));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), ascii);
  }
  // The vector registers held the input's bytes (a token): cleared, as the
  // scalar path's carried bytes are.
  _mm256_zeroall();
  return taken;
}
#endif

bool CpuHasAvx2() {
#ifdef TOKENBROKER_BASE64_AVX2
  static const bool has = __builtin_cpu_supports("avx2") != 0;
  return has;
#else
  return false;
#endif
}

}  // namespace

Base64Kernel BestBase64Kernel() { return CpuHasAvx2() ? Base64Kernel::kAvx2 : Base64Kernel::kScalar; }

void Base64OfPieces(std::initializer_list<absl::string_view> pieces, std::string* out) {
  Base64OfPieces(BestBase64Kernel(), pieces, out);
}

void Base64OfPieces(Base64Kernel kernel, std::initializer_list<absl::string_view> pieces, std::string* out) {
  const bool avx2 = kernel == Base64Kernel::kAvx2 && CpuHasAvx2();
  size_t total = 0;
  for (absl::string_view piece : pieces) total += piece.size();
  out->resize(4 * ((total + 2) / 3));
  char* d = out->data();
  auto three = [&d](const unsigned char* s) {
    const uint32_t v = (uint32_t{s[0]} << 16) | (uint32_t{s[1]} << 8) | s[2];
    std::memcpy(d, kBase64Pairs.pair[v >> 12], 2);
    std::memcpy(d + 2, kBase64Pairs.pair[v & 0xfff], 2);
    d += 4;
  };
  // Bytes of a group that a piece ended in the middle of.
  unsigned char carry[3];
  size_t carried = 0;
  for (absl::string_view piece : pieces) {
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    size_t n = piece.size();
    if (carried > 0) {
      while (carried < 3 && n > 0) {
        carry[carried++] = *s++;
        --n;
      }
      if (carried < 3) continue;
      three(carry);
      carried = 0;
    }
#ifdef TOKENBROKER_BASE64_AVX2
    if (avx2 && n >= 28) {
      const size_t taken = EncodeBlocksAvx2(s, n, d);
      s += taken;
      n -= taken;
      d += taken / 3 * 4;
    }
#else
    (void)avx2;
#endif
    for (; n >= 3; n -= 3, s += 3) three(s);
    while (n > 0) {
      carry[carried++] = *s++;
      --n;
    }
  }
  if (carried > 0) {
    const uint32_t v = (uint32_t{carry[0]} << 16) | (carried > 1 ? uint32_t{carry[1]} << 8 : 0);
    d[0] = kBase64[v >> 18];
    d[1] = kBase64[(v >> 12) & 63];
    d[2] = carried > 1 ? kBase64[(v >> 6) & 63] : '=';
    d[3] = '=';
  }
  OPENSSL_cleanse(carry, sizeof carry);
}

}  // namespace tokenbroker
