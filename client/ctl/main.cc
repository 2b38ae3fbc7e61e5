// tokenbrokerctl: the command-line client of tokenbrokerd.
#include <grpc/grpc.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/ctl/command.h"

namespace {

// The number of threads of this process (from /proc/self/status), or 0 when
// unknown.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    int n = 0;
    if (absl::StartsWith(line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(line).substr(8)), &n)) {
      return n;
    }
  }
  return 0;
}

// Waits (at most `limit`) until this is the process's only thread.
void AwaitOtherThreadsEnded(absl::Duration limit) {
  const absl::Time give_up = absl::Now() + limit;
  while (ThreadCount() > 1 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
}

}  // namespace

int main(int argc, char** argv) {
  grpc_init();
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code =
      tokenbroker::ctl::RunCtl(args, std::cout, std::cerr, [](const char* name) { return std::getenv(name); });
  // gRPC releases a channel's TLS state on its own threads after the channel
  // is gone: wait for that. Some of those threads are detached and end a
  // little after gRPC has let go of them: wait for them to be gone too, so
  // that what each frees as it ends (OpenSSL's per-thread error queue, 904
  // bytes) is freed before exit tears OpenSSL down and its destructor can no
  // longer run (LeakSanitizer, in the tests' builds, flagged it now and then
  // in the deploy tests). Usually no thread is left and this returns at once.
  grpc_shutdown_blocking();
  AwaitOtherThreadsEnded(absl::Seconds(2));
  return code;
}
