// SqlBackend: the little that differs between SQLite and PostgreSQL, so that
// SqlCredentialStore is written once. SQL text uses `?` placeholders; the
// PostgreSQL backend numbers them. Thread-safe.
#ifndef TOKENBROKER_SERVICE_STORE_SQL_BACKEND_H_
#define TOKENBROKER_SERVICE_STORE_SQL_BACKEND_H_

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenbroker {

// A bound parameter or a result column: NULL, an integer, text, or bytes.
struct SqlValue {
  struct Blob {
    std::string bytes;
  };
  std::variant<std::monostate, int64_t, std::string, Blob> v;

  static SqlValue Null() { return SqlValue{}; }
  static SqlValue Int(int64_t i) { return SqlValue{i}; }
  static SqlValue Text(std::string s) { return SqlValue{std::move(s)}; }
  static SqlValue Bytes(std::string b) { return SqlValue{Blob{std::move(b)}}; }

  bool is_null() const { return std::holds_alternative<std::monostate>(v); }
  int64_t AsInt() const;
  // Text or bytes.
  const std::string& AsString() const;
};

using SqlRow = std::vector<SqlValue>;

// One statement of a snapshot read (SqlBackend::ReadSnapshot).
struct SqlQuery {
  std::string sql;
  std::vector<SqlValue> params;
  // Which result columns are bytes (as for SqlSession::Query).
  std::vector<int> blob_columns;
};

// One connection inside a transaction.
class SqlSession {
 public:
  virtual ~SqlSession() = default;
  // Runs a statement and returns its rows. Column types follow the query:
  // the caller says which columns are bytes with `blob_columns`.
  virtual absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, const std::vector<SqlValue>& params,
                                                    const std::vector<int>& blob_columns = {}) = 0;
  // Runs a statement; returns the number of rows changed.
  virtual absl::StatusOr<int64_t> Execute(absl::string_view sql, const std::vector<SqlValue>& params) = 0;
};

class SqlBackend {
 public:
  virtual ~SqlBackend() = default;
  virtual absl::string_view kind() const = 0;
  // Runs `body` in one transaction: committed (durably) when it returns OK,
  // rolled back otherwise. A unique-key violation is ALREADY_EXISTS, a foreign
  // key violation FAILED_PRECONDITION, a lost connection UNAVAILABLE.
  virtual absl::Status InTransaction(const std::function<absl::Status(SqlSession&)>& body) = 0;
  // Runs queries that do not use one another's results on one snapshot of
  // the database and returns each one's rows, in order. By default they run
  // one after another in InTransaction; PostgreSQL sends them, with the
  // transaction's BEGIN and COMMIT, in one round trip.
  virtual absl::StatusOr<std::vector<std::vector<SqlRow>>> ReadSnapshot(const std::vector<SqlQuery>& queries);
  // SQL for the database's clock now, in microseconds since the epoch.
  virtual absl::string_view NowMicrosSql() const = 0;
  // Appended to a SELECT that reads a row it is about to change, so that a
  // concurrent transaction waits (" FOR UPDATE"; empty where transactions
  // already take the whole database, as SQLite's BEGIN IMMEDIATE does).
  virtual absl::string_view ForUpdateSql() const = 0;
  // A statement with one `?` that tells other processes `payload`, delivered
  // at commit; empty where only one process uses the database.
  virtual absl::string_view NotifySql() const = 0;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQL_BACKEND_H_
