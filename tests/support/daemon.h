// Running the real tokenbrokerd and tokenbrokerctl binaries in tests.
#ifndef TOKENBROKER_TESTS_SUPPORT_DAEMON_H_
#define TOKENBROKER_TESTS_SUPPORT_DAEMON_H_

#include <memory>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace tokenbroker::testing {

inline std::string DaemonPath() { return BinDir() + "/tokenbrokerd"; }
inline std::string CtlPath() { return BinDir() + "/tokenbrokerctl"; }

// The auth section of the embedded default: callers on the loopback
// plaintext listener are "local" and may do everything.
inline constexpr char kLocalAdminAuth[] =
    "auth:\n  local_caller: local\n  rules:\n    - callers: [local]\n      actions: [\"*\"]\n      grants: [\"*\"]\n";

// A configuration on free loopback ports with its files under `dir`. `store`
// replaces the SQLite store section when given (for example a postgres one).
// Unless `extra_keys` has its own auth section, kLocalAdminAuth is added.
std::string DaemonConfig(const TempDir& dir, const std::string& extra_keys = "  create_if_missing: true\n",
                         const std::string& grace = "5s", const std::string& store = "");

// A running tokenbrokerd and the addresses it logged.
struct RunningDaemon {
  std::unique_ptr<Subprocess> process;
  std::string grpc_address;
  std::string metrics_address;
  std::string health_address;  // empty without server.health_address
  // SIGTERM and wait; returns the exit code (-1 on timeout).
  int Stop();
};

// Starts tokenbrokerd and waits for its "serving" log line.
RunningDaemon StartDaemon(const std::string& config_path, const std::string& cwd);

// Runs tokenbrokerctl against `target` with `args`.
CommandResult Ctl(const std::string& target, const std::vector<std::string>& args);

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_DAEMON_H_
