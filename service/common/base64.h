// Standard padded base64 (RFC 4648) of several pieces one after another,
// written straight into a string: the pieces are never gathered into one
// plaintext buffer, so a secret among them leaves no copy to wipe. Every token
// cache hit encodes its XOAUTH2 string this way (service/common/sasl.h).
#ifndef TOKENBROKER_SERVICE_COMMON_BASE64_H_
#define TOKENBROKER_SERVICE_COMMON_BASE64_H_

#include <initializer_list>
#include <string>

#include "absl/strings/string_view.h"

namespace tokenbroker {

// How the bulk of a piece is encoded: 24 bytes at a time with AVX2 where the
// CPU has it (about a third of the instructions), else 3 bytes at a time.
// Both give the same bytes.
enum class Base64Kernel { kScalar, kAvx2 };

// The fastest kernel this CPU runs.
Base64Kernel BestBase64Kernel();

// base64 of `pieces` concatenated, replacing what `out` held (its buffer is
// reused).
void Base64OfPieces(std::initializer_list<absl::string_view> pieces, std::string* out);

// The same with a chosen kernel (tests run both). kAvx2 on a CPU without AVX2
// falls back to kScalar.
void Base64OfPieces(Base64Kernel kernel, std::initializer_list<absl::string_view> pieces, std::string* out);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_BASE64_H_
