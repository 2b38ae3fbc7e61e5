// SqlBackend over PostgreSQL (libpq): a fixed pool of connections, each
// transaction on one of them. A connection lost to a server restart is
// re-established on next use; a transaction whose BEGIN failed for that reason
// is retried once on a fresh connection. Each statement with parameters is
// prepared once per connection (server-side) and run by name after that; a
// snapshot read sends BEGIN, its queries and COMMIT in one pipeline (one round
// trip). The connection string is a secret (it may hold a password) and never
// appears in a message.
#ifndef TOKENBROKER_SERVICE_STORE_POSTGRES_BACKEND_H_
#define TOKENBROKER_SERVICE_STORE_POSTGRES_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/common/secret.h"
#include "service/store/sql_backend.h"

namespace tokenbroker {

class PostgresConnection;

// One forward-only schema step for PostgreSQL.
struct PostgresMigration {
  int version;
  absl::string_view sql;
};

class PostgresBackend final : public SqlBackend {
 public:
  // Connects `pool_size` connections and runs the migrations (under an
  // advisory lock, so replicas starting together migrate once).
  static absl::StatusOr<std::unique_ptr<PostgresBackend>> Open(const Secret& dsn, int pool_size,
                                                               const std::vector<PostgresMigration>& migrations);
  ~PostgresBackend() override;

  absl::string_view kind() const override { return "postgres"; }
  absl::Status InTransaction(const std::function<absl::Status(SqlSession&)>& body) override;
  absl::StatusOr<std::vector<std::vector<SqlRow>>> ReadSnapshot(const std::vector<SqlQuery>& queries) override;
  absl::string_view NowMicrosSql() const override {
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)";
  }
  absl::string_view ForUpdateSql() const override { return " FOR UPDATE"; }
  absl::string_view NotifySql() const override { return "SELECT pg_notify('tokenbroker_changes', ?)"; }

 private:
  explicit PostgresBackend(Secret dsn);
  PostgresConnection* Borrow();
  void Return(PostgresConnection* conn);
  absl::Status Migrate(const std::vector<PostgresMigration>& migrations);

  const Secret dsn_;
  absl::Mutex mu_;
  std::vector<PostgresConnection*> idle_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<PostgresConnection>> all_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_POSTGRES_BACKEND_H_
