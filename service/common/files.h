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

// An exclusive lock on a file (flock) that this process holds until the
// object goes, with the holder's pid written into the file. Not thread-safe;
// movable.
class FileLock {
 public:
  // Creates `path` when missing and locks it without waiting:
  // FAILED_PRECONDITION naming the file and the pid that holds it when another
  // process (or another FileLock in this one) does.
  static absl::StatusOr<FileLock> Acquire(const std::string& path);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_COMMON_FILES_H_
