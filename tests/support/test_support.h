// Helpers for tests that run real processes: temporary directories, child
// processes with captured output, waiting for a log line (no sleeps), and
// plain HTTP GETs.
#ifndef TOKENBROKER_TESTS_SUPPORT_TEST_SUPPORT_H_
#define TOKENBROKER_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tokenbroker::testing {

// A fresh directory (with a space in its name, to catch quoting bugs), removed
// with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Writes a file below the directory and returns its path.
  std::string WriteFile(const std::string& name, const std::string& contents, int mode = 0600) const;

 private:
  std::string path_;
};

// The directory holding the built binaries, and the source tree ($TOKENBROKER_BIN_DIR
// and $TOKENBROKER_SOURCE_DIR override the paths compiled in).
std::string BinDir();
std::string SourceDir();

// A child process whose stdout and stderr are captured line by line.
class Subprocess {
 public:
  // With `run_as_uid` >= 0 the child switches to that user (and group
  // `run_as_gid`) before exec, so that signals reach the program itself.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& cwd = "", int run_as_uid = -1,
                                                           int run_as_gid = -1);
  ~Subprocess();

  // Waits until a stderr line satisfies `match` and returns it; nullopt when
  // the process closed stderr or `timeout` passed first.
  std::optional<std::string> WaitForStderrLine(const std::function<bool(const std::string&)>& match,
                                               absl::Duration timeout);
  void Signal(int signal);
  // Waits for the exit and returns the exit code (128 + signal when killed);
  // DEADLINE_EXCEEDED when it is still running after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }
  std::string Stdout();
  // Waits until the output so far satisfies `match` (or stdout closes, or
  // `timeout` passes) and returns it.
  std::string WaitForStdout(const std::function<bool(const std::string&)>& match, absl::Duration timeout);
  std::string Stderr();

 private:
  Subprocess() = default;
  void ReadLoop(int fd, bool is_stderr);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_code_;
  absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> stderr_lines_ ABSL_GUARDED_BY(mu_);
  std::string stderr_partial_ ABSL_GUARDED_BY(mu_);
  bool stderr_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stdout_closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread out_reader_, err_reader_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a command to completion (at most `timeout`).
CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout = absl::Seconds(60),
                         int run_as_uid = -1, int run_as_gid = -1);

// A TCP port on 127.0.0.1 that was free a moment ago (for servers that take
// a port number, not a listening socket).
int FreePort();
// A socket listening on 127.0.0.1:`port` (0: a free one; `*bound_port` says
// which), or -1 when it cannot listen. The caller closes it.
int ListenOnLoopback(int port, int* bound_port);

struct CertificateFiles {
  std::string certificate;  // PEM path
  std::string private_key;  // PEM path
};
// Makes a self-signed RSA certificate and key under `dir` with the openssl
// command (`key_type` "rsa" or "ec"; negative `days` for an expired one is
// not possible, so use `days` >= 1).
CertificateFiles MakeSelfSignedCertificate(const TempDir& dir, const std::string& name, int days = 365,
                                           const std::string& key_type = "rsa", const std::string& san = "");
// A certificate authority (self-signed, CA:TRUE) for tests.
CertificateFiles MakeCertificateAuthority(const TempDir& dir, const std::string& name);
// A certificate for `name` signed by `ca`, with `san` ("IP:127.0.0.1",
// "URI:spiffe://...", ...), for a server or (`client`) a client.
CertificateFiles MakeSignedCertificate(const TempDir& dir, const std::string& name, const CertificateFiles& ca,
                                       const std::string& san, bool client);

// The contents of a file ("" when unreadable).
std::string ReadFile(const std::string& path);

// A size line of /proc/<pid>/status ("VmRSS", "RssAnon", ...), in bytes; 0
// when unknown.
uint64_t ProcessStatusBytes(pid_t pid, absl::string_view field);
// The resident memory of process `pid` (VmRSS), in bytes; 0 when unknown.
uint64_t ResidentBytes(pid_t pid);
// The peak resident memory of process `pid` (VmHWM), in bytes; 0 when unknown.
uint64_t PeakResidentBytes(pid_t pid);
// Resets the peak to the current resident memory (Linux: clear_refs 5).
void ResetPeakResident(pid_t pid);
// How many threads of process `pid` are named `name` (as `top -H` shows
// them: /proc/<pid>/task/*/comm).
int ThreadsNamed(pid_t pid, absl::string_view name);

// GET http://address/path; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

// An application/x-www-form-urlencoded body as a map (as a token endpoint
// reads it).
std::map<std::string, std::string> ParseForm(const std::string& body);

// The value of a string field in a one-line JSON object (no nesting), or "".
std::string JsonField(const std::string& line, const std::string& key);

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_TEST_SUPPORT_H_
