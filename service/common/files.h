// Small file helpers that report failures as absl::Status naming the path.
#ifndef TOKENBROKER_SERVICE_COMMON_FILES_H_
#define TOKENBROKER_SERVICE_COMMON_FILES_H_

#include <sys/types.h>

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/common/secret.h"

namespace tokenbroker {

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to a temporary file beside `path` with `mode`, fsyncs it,
// renames it over `path` and fsyncs the directory. Fails with ALREADY_EXISTS
// when `exclusive` and `path` exists.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, mode_t mode,
                                 bool exclusive = false);

// Reads a file holding one secret (a mounted Kubernetes Secret, a file an
// admin wrote). Trailing newlines, which editors and `echo` add, are dropped;
// the intermediate copy is wiped. INVALID_ARGUMENT when the file is empty.
absl::StatusOr<Secret> ReadSecretFile(const std::string& path);

// Creates `dir` and its parents (mode 0700 for new ones).
absl::Status MakeDirectories(const std::string& dir);

// The directory part of `path` ("." when there is none).
std::string DirName(const std::string& path);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_FILES_H_
