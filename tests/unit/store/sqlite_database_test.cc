#include "service/store/sqlite_database.h"

#include "absl/strings/str_cat.h"
#include "service/store/sqlite_backend.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/sqlite_schema.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

std::string QueryText(SqliteDatabase& db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db.handle(), sql, -1, &stmt, nullptr), SQLITE_OK);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  return out;
}

TEST(SqliteDatabaseTest, OpensWithWalForeignKeysAndFullSync) {
  testing::TempDir dir;
  auto db = SqliteDatabase::Open(dir.File("new/dir/broker.db"), SqliteMigrations());
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(QueryText(**db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryText(**db, "PRAGMA foreign_keys"), "1");
  EXPECT_EQ(QueryText(**db, "PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(*(*db)->SchemaVersion(), SqliteMigrations().back().version);
}

TEST(SqliteDatabaseTest, MigrationsRunOnceAndInOrder) {
  testing::TempDir dir;
  std::vector<SqliteMigration> steps = {{1, "CREATE TABLE a (x INTEGER)"}, {2, "INSERT INTO a VALUES (7)"}};
  {
    auto db = SqliteDatabase::Open(dir.File("m.db"), steps);
    ASSERT_TRUE(db.ok()) << db.status();
  }
  steps.push_back({3, "INSERT INTO a VALUES (8)"});
  auto db = SqliteDatabase::Open(dir.File("m.db"), steps);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(QueryText(**db, "SELECT group_concat(x) FROM a"), "7,8");
  EXPECT_EQ(*(*db)->SchemaVersion(), 3);
}

TEST(SqliteDatabaseTest, AFailedMigrationLeavesTheOldSchema) {
  testing::TempDir dir;
  auto ok = SqliteDatabase::Open(dir.File("m.db"), {{1, "CREATE TABLE a (x INTEGER)"}});
  ASSERT_TRUE(ok.ok());
  ok->reset();
  auto bad = SqliteDatabase::Open(dir.File("m.db"),
                                  {{1, "CREATE TABLE a (x INTEGER)"}, {2, "CREATE TABLE b (y); SELECT nonsense("}});
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("schema migration to version 2 failed"));
  auto again = SqliteDatabase::Open(dir.File("m.db"), {{1, "CREATE TABLE a (x INTEGER)"}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*(*again)->SchemaVersion(), 1);
  EXPECT_EQ(QueryText(**again, "SELECT count(*) FROM sqlite_master WHERE name = 'b'"), "0");
}

TEST(SqliteDatabaseTest, RefusesANewerSchema) {
  testing::TempDir dir;
  ASSERT_TRUE(SqliteDatabase::Open(dir.File("m.db"), {{1, "SELECT 1"}, {2, "SELECT 1"}}).ok());
  auto db = SqliteDatabase::Open(dir.File("m.db"), {{1, "SELECT 1"}});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(db.status().message()), ::testing::HasSubstr("schema version 2"));
}

TEST(SqliteDatabaseTest, NotADatabaseIsAClearError) {
  testing::TempDir dir;
  const std::string path = dir.WriteFile("junk.db", std::string(4096, 'x'));
  auto db = SqliteDatabase::Open(path, SqliteMigrations());
  EXPECT_FALSE(db.ok());
  EXPECT_THAT(std::string(db.status().message()), ::testing::HasSubstr(path));
}

TEST(SqliteStatementCacheTest, AStatementTextIsPreparedOnce) {
  testing::TempDir dir;
  auto db = SqliteDatabase::Open(dir.File("c.db"), {{1, "CREATE TABLE t (x INTEGER)"}});
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<sqlite3_stmt*> first = (*db)->Prepared("SELECT count(*) FROM t");
  ASSERT_TRUE(first.ok()) << first.status();
  SqliteDatabase::Release(*first);
  absl::StatusOr<sqlite3_stmt*> again = (*db)->Prepared("SELECT count(*) FROM t");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *first);
  absl::StatusOr<sqlite3_stmt*> bad = (*db)->Prepared("SELEKT 1");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("syntax error"));
}

// Through the backend, as the store uses it: a statement that failed, a
// schema that changed under a cached statement, and more texts than the
// cache holds all leave every later call right.
TEST(SqliteStatementCacheTest, FailuresSchemaChangesAndAFullCacheLeaveLaterCallsRight) {
  testing::TempDir dir;
  auto db = SqliteDatabase::Open(dir.File("c.db"), {{1, "CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER)"}});
  ASSERT_TRUE(db.ok()) << db.status();
  SqliteBackend backend(*std::move(db));
  const char* insert = "INSERT INTO t (id, v) VALUES (?, ?)";
  auto put = [&](const char* id, int v) {
    return backend.InTransaction([&](SqlSession& s) {
      return s.Execute(insert, {SqlValue::Text(id), SqlValue::Int(v)}).status();
    });
  };
  auto rows = [&](const char* sql) {
    std::vector<SqlRow> out;
    EXPECT_TRUE(backend
                    .InTransaction([&](SqlSession& s) {
                      absl::StatusOr<std::vector<SqlRow>> r = s.Query(sql, {});
                      if (r.ok()) out = *std::move(r);
                      return r.status();
                    })
                    .ok());
    return out;
  };
  ASSERT_TRUE(put("a", 1).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(put("a", 2)));
  ASSERT_TRUE(put("b", 2).ok()) << "the statement that failed was reset";
  std::vector<SqlRow> all = rows("SELECT * FROM t ORDER BY id");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].size(), 2u);
  EXPECT_EQ(all[0][1].AsInt(), 1) << "the failed insert changed nothing";

  ASSERT_TRUE(backend
                  .InTransaction([](SqlSession& s) {
                    return s.Execute("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 5", {}).status();
                  })
                  .ok());
  all = rows("SELECT * FROM t ORDER BY id");
  ASSERT_EQ(all.size(), 2u);
  ASSERT_EQ(all[1].size(), 3u) << "the cached statement sees the new column";
  EXPECT_EQ(all[1][2].AsInt(), 5);

  for (size_t i = 0; i < SqliteDatabase::kMaxStatements + 10; ++i) {
    const std::string sql = absl::StrCat("SELECT count(*) + ", i, " FROM t");
    std::vector<SqlRow> r = rows(sql.c_str());
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0][0].AsInt(), static_cast<int64_t>(i) + 2);
  }
  ASSERT_TRUE(put("c", 3).ok());
  EXPECT_EQ(rows("SELECT * FROM t ORDER BY id").size(), 3u);
}

}  // namespace
}  // namespace tokenbroker
