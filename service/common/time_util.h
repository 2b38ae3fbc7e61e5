// Conversions between protobuf, text and absl time types.
#ifndef TOKENBROKER_SERVICE_COMMON_TIME_UTIL_H_
#define TOKENBROKER_SERVICE_COMMON_TIME_UTIL_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"

namespace tokenbroker {

absl::Duration FromProtoDuration(const google::protobuf::Duration& d);
google::protobuf::Duration ToProtoDuration(absl::Duration d);

// A date ("2027-11-27", midnight UTC) or an RFC 3339 time; nullopt otherwise.
std::optional<absl::Time> ParseDateOrTime(absl::string_view text);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_TIME_UTIL_H_
