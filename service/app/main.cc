// tokenbrokerd: the token broker daemon.
//
// Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or a successful
// --check-config; 1 when a start-up step fails; 2 for a bad command line or
// configuration.

#include "absl/synchronization/mutex.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "service/app/broker.h"
#include "service/app/grpc_log.h"
#include "service/authz/authorizer.h"
#include "service/config/config_loader.h"
#include "service/logging/logger.h"
#include "tokenbroker/version.h"

namespace {

constexpr char kUsage[] =
    "Usage: tokenbrokerd --config FILE [--check-config]\n"
    "       tokenbrokerd --version | --help\n"
    "\n"
    "Runs the tokenbroker daemon with the YAML configuration FILE\n"
    "(schema: proto/tokenbroker/config/v1/config.proto; docs/configuration.md).\n"
    "\n"
    "  --config FILE    the configuration file (required)\n"
    "  --check-config   validate FILE, print \"configuration OK\" and exit 0, or\n"
    "                   print what is wrong and exit 2\n"
    "  --version        print the version and exit\n"
    "  --help           print this help and exit\n"
    "\n"
    "SIGTERM or SIGINT: stop accepting calls, finish in-flight calls within\n"
    "server.shutdown_grace_period, exit 0.\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tokenbrokerd: %s\n\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles, a
  // debugging aid that costs on every lock: off in release builds (the
  // sanitizer test builds keep it).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--version") {
      std::printf("tokenbrokerd %s (%s)\n", tokenbroker::kVersion,
                  tokenbroker::kRevision[0] ? tokenbroker::kRevision : "unknown revision");
      return 0;
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      return UsageError(absl::StrCat("unknown argument \"", arg, "\""));
    }
  }
  if (config_path.empty()) return UsageError("--config FILE is required");

  absl::StatusOr<tokenbroker::Config> config = tokenbroker::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "tokenbrokerd: configuration error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  // The auth section reads files (bearer tokens, a JWKS file is read on use):
  // checked here too, so --check-config catches a bad policy.
  if (absl::Status auth = tokenbroker::Authorizer::Build(config->auth(), tokenbroker::SystemClock::Get()).status();
      !auth.ok()) {
    std::fprintf(stderr, "tokenbrokerd: configuration error: %s: %s\n", config_path.c_str(),
                 std::string(auth.message()).c_str());
    return 2;
  }
  if (check_only) {
    std::printf("%s: configuration OK\n", config_path.c_str());
    return 0;
  }

  // Files we create (database, keyring) are ours alone.
  umask(0077);

  // No core dumps: the process holds secrets in memory. Not dumpable also
  // keeps other processes of the same user from attaching a debugger or
  // reading /proc/<pid>/mem.
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Block the shutdown signals in every thread; this one waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  tokenbroker::Logger logger(tokenbroker::LogLevel::kInfo);
  switch (config->log().level()) {
    case tokenbroker::config::v1::LogConfig::LEVEL_DEBUG:
      logger.SetLevel(tokenbroker::LogLevel::kDebug);
      break;
    case tokenbroker::config::v1::LogConfig::LEVEL_WARN:
      logger.SetLevel(tokenbroker::LogLevel::kWarn);
      break;
    case tokenbroker::config::v1::LogConfig::LEVEL_ERROR:
      logger.SetLevel(tokenbroker::LogLevel::kError);
      break;
    default:
      break;
  }

  // gRPC's own lines (a refused TLS handshake, say) are JSON like ours.
  tokenbroker::SendGrpcLogsTo(logger);
  tokenbroker::Broker broker(*config, logger, tokenbroker::SystemClock::Get(), config_path);
  absl::Status started = broker.Start();
  if (!started.ok()) {
    std::fprintf(stderr, "tokenbrokerd: %s\n", std::string(started.message()).c_str());
    return 1;
  }

  int received = 0;
  while (sigwait(&signals, &received) != 0) {
  }
  logger.Info("shutting down", {{"signal", strsignal(received)}});
  broker.Shutdown();
  return 0;
}
