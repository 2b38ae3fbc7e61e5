// The SQLite schema, as forward-only migrations. Never edit a released step:
// add a new one.
#ifndef TOKENBROKER_SERVICE_STORE_SQLITE_SCHEMA_H_
#define TOKENBROKER_SERVICE_STORE_SQLITE_SCHEMA_H_

#include <vector>

#include "service/store/sqlite_database.h"

namespace tokenbroker {

inline const std::vector<SqliteMigration>& SqliteMigrations() {
  static const std::vector<SqliteMigration>* migrations = new std::vector<SqliteMigration>{
      {1,
       "CREATE TABLE broker_meta ("
       "  key TEXT PRIMARY KEY NOT NULL,"
       "  value TEXT NOT NULL)"},
  };
  return *migrations;
}

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQLITE_SCHEMA_H_
