// tokenbrokerctl: the command-line client of tokenbrokerd.
#include <grpc/grpc.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/ctl/command.h"

int main(int argc, char** argv) {
  // gRPC releases a channel's TLS state on its own threads after the channel
  // is gone: wait for that before the process ends, so that nothing is cut
  // off half freed (and LeakSanitizer, in the tests' builds, sees no leak).
  grpc_init();
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code =
      tokenbroker::ctl::RunCtl(args, std::cout, std::cerr, [](const char* name) { return std::getenv(name); });
  grpc_shutdown_blocking();
  return code;
}
