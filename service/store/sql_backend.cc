#include "service/store/sql_backend.h"

namespace tokenbroker {

int64_t SqlValue::AsInt() const {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return *i;
  return 0;
}

const std::string& SqlValue::AsString() const {
  static const std::string* empty = new std::string();
  if (const std::string* s = std::get_if<std::string>(&v)) return *s;
  if (const Blob* b = std::get_if<Blob>(&v)) return b->bytes;
  return *empty;
}

absl::StatusOr<std::vector<std::vector<SqlRow>>> SqlBackend::ReadSnapshot(const std::vector<SqlQuery>& queries) {
  std::vector<std::vector<SqlRow>> results;
  absl::Status status = InTransaction([&](SqlSession& s) -> absl::Status {
    results.clear();
    for (const SqlQuery& q : queries) {
      absl::StatusOr<std::vector<SqlRow>> rows = s.Query(q.sql, q.params, q.blob_columns);
      if (!rows.ok()) return rows.status();
      results.push_back(*std::move(rows));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return results;
}

}  // namespace tokenbroker
