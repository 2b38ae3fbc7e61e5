#include "tests/support/daemon.h"

#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tokenbroker::testing {

std::string DaemonConfig(const TempDir& dir, const std::string& extra_keys, const std::string& grace,
                         const std::string& store) {
  return absl::StrCat("server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: 127.0.0.1:0\n",
                      "  shutdown_grace_period: ", grace, "\n  plaintext: true\n",
                      store.empty() ? absl::StrCat("store:\n  sqlite:\n    path: \"", dir.File("var/tokenbroker.db"),
                                                   "\"\n")
                                    : store,
                      "keys:\n  keyring_file: \"", dir.File("var/keyring.yaml"), "\"\n", extra_keys,
                      extra_keys.find("\nauth:") == std::string::npos && !absl::StartsWith(extra_keys, "auth:")
                          ? kLocalAdminAuth
                          : "");
}

int RunningDaemon::Stop() {
  if (process == nullptr) return -1;
  process->Signal(SIGTERM);
  absl::StatusOr<int> code = process->Wait(absl::Seconds(30));
  return code.ok() ? *code : -1;
}

RunningDaemon StartDaemon(const std::string& config_path, const std::string& cwd) {
  RunningDaemon d;
  auto proc = Subprocess::Start({DaemonPath(), "--config", config_path}, cwd);
  EXPECT_TRUE(proc.ok()) << proc.status();
  if (!proc.ok()) return d;
  d.process = std::move(*proc);
  std::optional<std::string> line = d.process->WaitForStderrLine(
      [](const std::string& l) { return l.find("\"msg\":\"serving\"") != std::string::npos; }, absl::Seconds(60));
  EXPECT_TRUE(line.has_value()) << d.process->Stderr();
  if (line.has_value()) {
    d.grpc_address = JsonField(*line, "grpc_address");
    d.metrics_address = JsonField(*line, "metrics_address");
    d.health_address = JsonField(*line, "health_address");
    if (d.health_address == "disabled") d.health_address.clear();
  }
  return d;
}

CommandResult Ctl(const std::string& target, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CtlPath(), "--target", target};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

}  // namespace tokenbroker::testing
