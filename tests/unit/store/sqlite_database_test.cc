#include "service/store/sqlite_database.h"

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

}  // namespace
}  // namespace tokenbroker
