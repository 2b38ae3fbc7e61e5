// SqlBackend over one SQLite connection (WAL, synchronous=FULL), serialised by
// a mutex: SQLite allows one writer at a time anyway.
#ifndef TOKENBROKER_SERVICE_STORE_SQLITE_BACKEND_H_
#define TOKENBROKER_SERVICE_STORE_SQLITE_BACKEND_H_

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/sql_backend.h"
#include "service/store/sqlite_database.h"

namespace tokenbroker {

class SqliteBackend final : public SqlBackend {
 public:
  explicit SqliteBackend(std::unique_ptr<SqliteDatabase> db) : db_(std::move(db)) {}
  absl::string_view kind() const override { return "sqlite"; }
  absl::Status InTransaction(const std::function<absl::Status(SqlSession&)>& body) override;
  absl::string_view NowMicrosSql() const override {
    return "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";
  }
  absl::string_view ForUpdateSql() const override { return ""; }
  absl::string_view NotifySql() const override { return ""; }

 private:
  absl::Mutex mu_;
  std::unique_ptr<SqliteDatabase> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQLITE_BACKEND_H_
