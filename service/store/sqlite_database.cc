#include "service/store/sqlite_database.h"

#include "absl/strings/str_cat.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"

namespace tokenbroker {

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::string& path,
                                                                     const std::vector<SqliteMigration>& migrations) {
  RETURN_IF_ERROR(MakeDirectories(DirName(path)));
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open SQLite database ", path, ": ", msg));
  }
  std::unique_ptr<SqliteDatabase> database(new SqliteDatabase(db, path));
  sqlite3_busy_timeout(db, 5000);
  RETURN_IF_ERROR(database->Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"));
  RETURN_IF_ERROR(database->Migrate(migrations));
  return database;
}

SqliteDatabase::~SqliteDatabase() {
  FinalizeStatements();
  sqlite3_close_v2(db_);
}

void SqliteDatabase::FinalizeStatements() {
  for (auto& [sql, statement] : statements_) sqlite3_finalize(statement);
  statements_.clear();
}

absl::StatusOr<sqlite3_stmt*> SqliteDatabase::Prepared(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  if (statements_.size() >= kMaxStatements) FinalizeStatements();
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &statement,
                         nullptr) != SQLITE_OK) {
    return LastError("SQLite statement failed");
  }
  statements_.emplace(std::string(sql), statement);
  return statement;
}

void SqliteDatabase::Release(sqlite3_stmt* statement) {
  sqlite3_reset(statement);
  sqlite3_clear_bindings(statement);
}

absl::Status SqliteDatabase::Run(absl::string_view sql) {
  ASSIGN_OR_RETURN(sqlite3_stmt * statement, Prepared(sql));
  const int rc = sqlite3_step(statement);
  absl::Status status = rc == SQLITE_DONE || rc == SQLITE_ROW ? absl::OkStatus() : LastError("SQLite statement failed");
  Release(statement);
  return status;
}

absl::Status SqliteDatabase::LastError(absl::string_view what) const {
  const int rc = sqlite3_extended_errcode(db_);
  absl::StatusCode code = absl::StatusCode::kInternal;
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) code = absl::StatusCode::kUnavailable;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) code = absl::StatusCode::kAlreadyExists;
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) code = absl::StatusCode::kDataLoss;
  return absl::Status(code, absl::StrCat(what, " (", path_, "): ", sqlite3_errmsg(db_)));
}

absl::Status SqliteDatabase::Exec(absl::string_view sql) {
  std::string s(sql);
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return LastError("SQLite statement failed");
  return absl::OkStatus();
}

absl::StatusOr<int> SqliteDatabase::SchemaVersion() {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &stmt, nullptr) != SQLITE_OK) {
    return LastError("cannot read the schema version");
  }
  int version = 0;
  if (sqlite3_step(stmt) == SQLITE_ROW) version = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  return version;
}

absl::Status SqliteDatabase::Migrate(const std::vector<SqliteMigration>& migrations) {
  ASSIGN_OR_RETURN(int current, SchemaVersion());
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  if (current > newest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", path_, " has schema version ", current, " but this tokenbrokerd knows only up to ", newest,
        "; run the newer tokenbrokerd that wrote it, or restore a backup"));
  }
  for (const SqliteMigration& m : migrations) {
    if (m.version <= current) continue;
    absl::Status s = Exec(absl::StrCat("BEGIN IMMEDIATE; ", m.sql, "; PRAGMA user_version=", m.version, "; COMMIT;"));
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return absl::Status(s.code(), absl::StrCat("schema migration to version ", m.version, " failed: ", s.message()));
    }
    current = m.version;
  }
  return absl::OkStatus();
}

}  // namespace tokenbroker
