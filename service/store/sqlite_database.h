// A SQLite connection configured for the broker: WAL journal, foreign keys on,
// a busy timeout, synchronous=FULL (a refresh token that was acknowledged must
// survive a power cut), and forward-only schema migrations run at open.
// Statements are prepared once per SQL text and kept (see Prepared).
// Not thread-safe: callers serialise access (the store holds a mutex).
#ifndef TOKENBROKER_SERVICE_STORE_SQLITE_DATABASE_H_
#define TOKENBROKER_SERVICE_STORE_SQLITE_DATABASE_H_

#include <sqlite3.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenbroker {

// One schema step: `version` is the user_version after it ran.
struct SqliteMigration {
  int version;
  absl::string_view sql;
};

class SqliteDatabase {
 public:
  // Opens (creating the file and its directory when missing) and migrates.
  // Refuses a database whose schema is newer than `migrations` know.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path,
                                                              const std::vector<SqliteMigration>& migrations);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  // Runs one or more statements without results (parsed every time: for
  // set-up and migrations).
  absl::Status Exec(absl::string_view sql);
  // Runs one statement without results from the statement cache (BEGIN,
  // COMMIT).
  absl::Status Run(absl::string_view sql);

  // The prepared statement for one statement `sql`, from the cache when the
  // same text was prepared before: parsing is most of the CPU of a small
  // write. Hand it back with Release (reset, unbound) before the next call
  // with the same text. The cache holds at most kMaxStatements; when full it
  // starts over (the broker's statements are a few dozen texts).
  absl::StatusOr<sqlite3_stmt*> Prepared(absl::string_view sql);
  static void Release(sqlite3_stmt* statement);
  static constexpr size_t kMaxStatements = 256;
  // PRAGMA user_version.
  absl::StatusOr<int> SchemaVersion();
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // An error status for the last failure, naming what was being done.
  absl::Status LastError(absl::string_view what) const;

 private:
  SqliteDatabase(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  absl::Status Migrate(const std::vector<SqliteMigration>& migrations);

  void FinalizeStatements();

  sqlite3* db_;
  std::string path_;
  absl::flat_hash_map<std::string, sqlite3_stmt*> statements_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQLITE_DATABASE_H_
