#include "tests/support/postgres_server.h"

#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace tokenbroker::testing {
namespace {

std::string FindBinDir() {
  for (const char* candidate : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"}) {
    if (std::filesystem::exists(std::string(candidate) + "/initdb")) return candidate;
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> pg(new PostgresServer());
  pg->bin_dir_ = FindBinDir();
  if (pg->bin_dir_.empty()) return absl::UnavailableError("PostgreSQL is not installed (scripts/install-deps --test)");
  pg->data_dir_ = pg->dir_.File("data");
  pg->socket_dir_ = pg->dir_.File("run");
  std::filesystem::create_directories(pg->data_dir_);
  std::filesystem::create_directories(pg->socket_dir_);
  // PostgreSQL refuses to run as root: use the postgres user then.
  if (geteuid() == 0) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) return absl::UnavailableError("running as root and there is no postgres user");
    pg->uid_ = static_cast<int>(pw->pw_uid);
    pg->gid_ = static_cast<int>(pw->pw_gid);
    chmod(pg->dir_.path().c_str(), 0711);
    for (const std::string& d : {pg->data_dir_, pg->socket_dir_}) {
      if (chown(d.c_str(), pw->pw_uid, pw->pw_gid) != 0) return absl::InternalError("chown failed");
    }
  }
  CommandResult init = RunCommand({pg->bin_dir_ + "/initdb", "-D", pg->data_dir_, "-U", "postgres", "--auth=trust",
                                   "--no-sync", "-E", "UTF8", "--locale=C"},
                                  absl::Seconds(120), pg->uid_, pg->gid_);
  if (init.exit_code != 0) return absl::InternalError(absl::StrCat("initdb failed: ", init.err));
  pg->port_ = FreePort();
  absl::Status launched = pg->Launch();
  if (!launched.ok()) return launched;
  return pg;
}

absl::Status PostgresServer::Launch() {
  auto proc = Subprocess::Start({bin_dir_ + "/postgres", "-D", data_dir_, "-p", absl::StrCat(port_), "-k", socket_dir_,
                                 "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50"},
                                "", uid_, gid_);
  if (!proc.ok()) return proc.status();
  server_ = std::move(*proc);
  auto ready = server_->WaitForStderrLine(
      [](const std::string& line) { return line.find("ready to accept connections") != std::string::npos; },
      absl::Seconds(60));
  if (!ready.has_value()) return absl::InternalError(absl::StrCat("postgres did not start: ", server_->Stderr()));
  return absl::OkStatus();
}

absl::Status PostgresServer::Stop() {
  if (server_ == nullptr) return absl::OkStatus();
  server_->Signal(SIGINT);  // fast shutdown
  absl::StatusOr<int> code = server_->Wait(absl::Seconds(60));
  server_.reset();
  return code.ok() ? absl::OkStatus() : code.status();
}

absl::Status PostgresServer::Restart() {
  absl::Status stopped = Stop();
  if (!stopped.ok()) return stopped;
  return Launch();
}

PostgresServer::~PostgresServer() { Stop().IgnoreError(); }

std::string PostgresServer::Dsn(const std::string& database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=postgres dbname=", database, " connect_timeout=10");
}

CommandResult PostgresServer::RunClient(const std::string& program, const std::vector<std::string>& args,
                                        const std::string& database) const {
  std::vector<std::string> argv = {bin_dir_ + "/" + program, "-h", "127.0.0.1", "-p", absl::StrCat(port_), "-U",
                                   "postgres"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(database);
  return RunCommand(argv);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase() {
  const std::string name = absl::StrCat("test_", getpid(), "_", ++databases_);
  CommandResult r = RunClient("createdb", {}, name);
  if (r.exit_code != 0) return absl::InternalError(absl::StrCat("createdb failed: ", r.err));
  return name;
}

namespace {
PostgresServer* shared_server = nullptr;
}  // namespace

PostgresServer& SharedPostgresServer() {
  static const bool started = [] {
    auto server = PostgresServer::Start();
    if (!server.ok()) {
      std::fprintf(stderr, "cannot start PostgreSQL for the tests: %s\n", server.status().ToString().c_str());
      std::abort();
    }
    shared_server = server->release();
    // Stop the server (and remove its directory) when the test process ends,
    // so that no PostgreSQL outlives the tests.
    std::atexit([] {
      delete shared_server;
      shared_server = nullptr;
    });
    return true;
  }();
  (void)started;
  return *shared_server;
}

}  // namespace tokenbroker::testing
