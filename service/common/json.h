// Writing JSON strings, and reading JSON objects through protobuf's JSON
// parser.
#ifndef TOKENBROKER_SERVICE_COMMON_JSON_H_
#define TOKENBROKER_SERVICE_COMMON_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace tokenbroker {

// Escapes `s` as the contents of a JSON string (without the quotes). Invalid
// UTF-8 bytes become U+FFFD.
void AppendJsonEscaped(std::string& out, absl::string_view s);

// `s` as a JSON string, quotes included.
std::string JsonQuote(absl::string_view s);

// Reading JSON objects (provider replies, JWT claims, JWKS): a field's value
// (nullptr when absent), its string ("" when absent or not a string), and a
// number of seconds (a number, or a string holding one, as some providers send
// expires_in and interval).
const google::protobuf::Value* JsonField(const google::protobuf::Struct& json, const char* name);
std::string JsonString(const google::protobuf::Struct& json, const char* name);
bool JsonSeconds(const google::protobuf::Struct& json, const char* name, double* out);

// A JSON number as an integer: truncated toward zero and clamped to int64's
// range, NaN as 0. A reply's `"expires_in": 1e30` is an outsider's number;
// casting it straight to an integer would be undefined behaviour.
int64_t JsonInteger(double number);

// Zeroes every top-level string value of `json` (a token reply, a token's
// claims) before it is freed.
void WipeJsonStrings(google::protobuf::Struct& json);

// Parses `text` as one JSON object. INVALID_ARGUMENT naming `what` otherwise
// (the text itself is never echoed: it may be a credential).
absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view text, absl::string_view what);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_JSON_H_
