// A private PostgreSQL server for tests: initdb in a temporary directory, a
// free loopback port, trust authentication, started and stopped by the test
// (as the `postgres` user when the test runs as root). Readiness is the
// server's own "ready to accept connections" log line, not a sleep.
#ifndef TOKENBROKER_TESTS_SUPPORT_POSTGRES_SERVER_H_
#define TOKENBROKER_TESTS_SUPPORT_POSTGRES_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {

class PostgresServer {
 public:
  // initdb and start. UNAVAILABLE when PostgreSQL is not installed.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();

  // A libpq connection string for `database` on this server.
  std::string Dsn(const std::string& database = "postgres") const;
  // Creates a fresh, empty database and returns its name.
  absl::StatusOr<std::string> CreateDatabase();
  // Stops the server (fast shutdown) and starts it again on the same port and
  // data directory.
  absl::Status Restart();
  absl::Status Stop();
  // Runs a PostgreSQL client program from the server's bin directory (for
  // example pg_dump) against `database` and returns its output.
  CommandResult RunClient(const std::string& program, const std::vector<std::string>& args,
                          const std::string& database) const;
  int port() const { return port_; }

 private:
  PostgresServer() = default;
  absl::Status Launch();

  TempDir dir_;
  std::string bin_dir_;
  std::string data_dir_;
  std::string socket_dir_;
  int port_ = 0;
  int databases_ = 0;
  // The user the server runs as (-1: this process's).
  int uid_ = -1;
  int gid_ = -1;
  std::unique_ptr<Subprocess> server_;
};

// One server for the whole test process, started on first use (aborts the
// test binary when PostgreSQL cannot start). Tests take a fresh database each.
PostgresServer& SharedPostgresServer();

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_POSTGRES_SERVER_H_
