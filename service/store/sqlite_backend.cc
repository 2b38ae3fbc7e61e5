#include "service/store/sqlite_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

class SqliteSession final : public SqlSession {
 public:
  explicit SqliteSession(SqliteDatabase& db) : db_(db) {}

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, const std::vector<SqlValue>& params,
                                            const std::vector<int>& blob_columns) override {
    absl::StatusOr<sqlite3_stmt*> prepared = db_.Prepared(sql);
    if (!prepared.ok()) return prepared.status();
    sqlite3_stmt* stmt = *prepared;
    std::unique_ptr<sqlite3_stmt, void (*)(sqlite3_stmt*)> guard(stmt, &SqliteDatabase::Release);
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const auto& v = params[i].v;
      int rc = SQLITE_OK;
      if (std::holds_alternative<std::monostate>(v)) {
        rc = sqlite3_bind_null(stmt, index);
      } else if (const int64_t* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(stmt, index, *n);
      } else if (const std::string* s = std::get_if<std::string>(&v)) {
        rc = sqlite3_bind_text(stmt, index, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
      } else {
        const std::string& b = std::get<SqlValue::Blob>(v).bytes;
        rc = sqlite3_bind_blob(stmt, index, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) return Error();
    }
    std::vector<SqlRow> rows;
    while (true) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error();
      SqlRow row;
      const int n = sqlite3_column_count(stmt);
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_NULL:
            row.push_back(SqlValue::Null());
            break;
          case SQLITE_INTEGER:
            row.push_back(SqlValue::Int(sqlite3_column_int64(stmt, c)));
            break;
          default: {
            const char* data = static_cast<const char*>(sqlite3_column_blob(stmt, c));
            std::string bytes(data != nullptr ? data : "", static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
            const bool blob = std::find(blob_columns.begin(), blob_columns.end(), c) != blob_columns.end();
            row.push_back(blob ? SqlValue::Bytes(std::move(bytes)) : SqlValue::Text(std::move(bytes)));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  absl::StatusOr<int64_t> Execute(absl::string_view sql, const std::vector<SqlValue>& params) override {
    absl::StatusOr<std::vector<SqlRow>> rows = Query(sql, params, {});
    if (!rows.ok()) return rows.status();
    return sqlite3_changes(db_.handle());
  }

 private:
  absl::Status Error() {
    const int rc = sqlite3_extended_errcode(db_.handle());
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
      return absl::AlreadyExistsError(sqlite3_errmsg(db_.handle()));
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return absl::FailedPreconditionError(sqlite3_errmsg(db_.handle()));
    return db_.LastError("SQLite");
  }

  SqliteDatabase& db_;
};

}  // namespace

absl::Status SqliteBackend::InTransaction(const std::function<absl::Status(SqlSession&)>& body) {
  absl::MutexLock lock(&mu_);
  absl::Status begin = db_->Run("BEGIN IMMEDIATE");
  if (!begin.ok()) return begin;
  SqliteSession session(*db_);
  absl::Status status = body(session);
  if (status.ok()) status = db_->Run("COMMIT");
  if (!status.ok()) db_->Run("ROLLBACK").IgnoreError();
  return status;
}

}  // namespace tokenbroker
