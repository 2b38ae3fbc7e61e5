// Loads and validates tokenbrokerd's configuration file (schema:
// proto/tokenbroker/config/v1/config.proto).
#ifndef TOKENBROKER_SERVICE_CONFIG_CONFIG_LOADER_H_
#define TOKENBROKER_SERVICE_CONFIG_CONFIG_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tokenbroker/config/v1/config.pb.h"

namespace tokenbroker {

using Config = config::v1::Config;

// Reads, parses and validates `path`. Every error is INVALID_ARGUMENT (or
// NOT_FOUND for a missing file) and names the file, and for a bad key the line
// and key path.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Parses and validates YAML text; `source_name` is used in messages.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source_name);

// Checks what the schema alone cannot: address syntax, one store backend,
// plaintext only on loopback or a Unix socket.
absl::Status ValidateConfig(const Config& config, absl::string_view source_name);

// Effective values with defaults applied.
absl::Duration ShutdownGracePeriod(const Config& config);

// True for "unix:..." addresses and for hosts 127.0.0.0/8, ::1 and localhost.
bool IsLoopbackOrUnixAddress(absl::string_view address);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CONFIG_CONFIG_LOADER_H_
