// Fills a protobuf message from a YAML document, strictly: an unknown key, a
// duplicate key, a value of the wrong type or out of range, two members of one
// oneof, or a missing field marked `(tokenbroker.config.v1.required)` is an
// INVALID_ARGUMENT error of the form
//   FILE:LINE:COL: KEY.PATH: what was wrong; what was expected
// google.protobuf.Duration fields take strings such as "30s" or "1h30m".
// Enum fields take the value name without its type prefix, in any case
// ("info" for LEVEL_INFO).
#ifndef TOKENBROKER_SERVICE_CONFIG_YAML_PROTO_H_
#define TOKENBROKER_SERVICE_CONFIG_YAML_PROTO_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace tokenbroker {

// `source_name` is used in error messages (normally the file path).
absl::Status YamlToProto(absl::string_view yaml, absl::string_view source_name, google::protobuf::Message* message);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CONFIG_YAML_PROTO_H_
