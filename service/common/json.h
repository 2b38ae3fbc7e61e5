// Writing JSON strings. (Reading JSON goes through protobuf's JSON parser.)
#ifndef TOKENBROKER_SERVICE_COMMON_JSON_H_
#define TOKENBROKER_SERVICE_COMMON_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace tokenbroker {

// Escapes `s` as the contents of a JSON string (without the quotes). Invalid
// UTF-8 bytes become U+FFFD.
void AppendJsonEscaped(std::string& out, absl::string_view s);

// `s` as a JSON string, quotes included.
std::string JsonQuote(absl::string_view s);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_JSON_H_
