#include "service/store/postgres_backend.h"

#include <libpq-fe.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

constexpr unsigned kByteaOid = 17;
constexpr unsigned kInt8Oid = 20;
constexpr unsigned kInt2Oid = 21;
constexpr unsigned kInt4Oid = 23;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// libpq's message of a failed connection, without the connection string.
std::string ConnectionError(PGconn* conn) {
  std::string msg = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

absl::Status ResultError(PGconn* conn, PGresult* res) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg = res != nullptr ? PQresultErrorMessage(res) : ConnectionError(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  const std::string code = state != nullptr ? state : "";
  if (PQstatus(conn) != CONNECTION_OK || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL connection lost: ", msg));
  }
  if (code == "23505") return absl::AlreadyExistsError(msg);
  if (code == "23503") return absl::FailedPreconditionError(msg);
  if (code == "40001" || code == "40P01") return absl::AbortedError(msg);
  return absl::InternalError(absl::StrCat("PostgreSQL: ", msg));
}

// "?" placeholders to "$1", "$2", ... (our SQL has no "?" in literals).
std::string NumberPlaceholders(absl::string_view sql) {
  std::string out;
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      absl::StrAppend(&out, "$", ++n);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

class PostgresSession final : public SqlSession {
 public:
  explicit PostgresSession(PGconn* conn) : conn_(conn) {}

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, const std::vector<SqlValue>& params,
                                            const std::vector<int>&) override {
    ASSIGN_OR_RETURN(Result res, Run(sql, params));
    std::vector<SqlRow> rows;
    const int nrows = PQntuples(res.get());
    const int ncols = PQnfields(res.get());
    for (int r = 0; r < nrows; ++r) {
      SqlRow row;
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res.get(), r, c)) {
          row.push_back(SqlValue::Null());
          continue;
        }
        const char* text = PQgetvalue(res.get(), r, c);
        const unsigned type = PQftype(res.get(), c);
        if (type == kInt8Oid || type == kInt4Oid || type == kInt2Oid) {
          int64_t v = 0;
          (void)absl::SimpleAtoi(text, &v);
          row.push_back(SqlValue::Int(v));
        } else if (type == kByteaOid) {
          // Text format of bytea: "\x" followed by hex.
          std::string bytes = absl::HexStringToBytes(absl::string_view(text).substr(2));
          row.push_back(SqlValue::Bytes(std::move(bytes)));
        } else {
          row.push_back(SqlValue::Text(std::string(text, static_cast<size_t>(PQgetlength(res.get(), r, c)))));
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  absl::StatusOr<int64_t> Execute(absl::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(Result res, Run(sql, params));
    int64_t changed = 0;
    (void)absl::SimpleAtoi(PQcmdTuples(res.get()), &changed);
    return changed;
  }

 private:
  absl::StatusOr<Result> Run(absl::string_view sql, const std::vector<SqlValue>& params) {
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size());
    std::vector<int> formats(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& v = params[i].v;
      if (std::holds_alternative<std::monostate>(v)) {
        values[i] = nullptr;
        continue;
      }
      if (const int64_t* n = std::get_if<int64_t>(&v)) {
        storage[i] = absl::StrCat(*n);
      } else if (const std::string* s = std::get_if<std::string>(&v)) {
        storage[i] = *s;
      } else {
        storage[i] = std::get<SqlValue::Blob>(v).bytes;
        formats[i] = 1;  // binary
      }
      values[i] = storage[i].data();
      lengths[i] = static_cast<int>(storage[i].size());
    }
    const std::string text = NumberPlaceholders(sql);
    // Without parameters, the simple protocol: it also runs several statements
    // at once (migrations).
    Result res(params.empty() ? PQexec(conn_, text.c_str())
                              : PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                                             lengths.data(), formats.data(), 0));
    const ExecStatusType st = res != nullptr ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return ResultError(conn_, res.get());
    return res;
  }

  PGconn* conn_;
};

absl::Status Exec(PGconn* conn, const char* sql) {
  Result res(PQexec(conn, sql));
  if (res == nullptr || PQresultStatus(res.get()) != PGRES_COMMAND_OK) return ResultError(conn, res.get());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresBackend>> PostgresBackend::Open(
    const Secret& dsn, int pool_size, const std::vector<PostgresMigration>& migrations) {
  std::unique_ptr<PostgresBackend> backend(new PostgresBackend(dsn.Clone()));
  if (pool_size < 1) pool_size = 4;
  for (int i = 0; i < pool_size; ++i) {
    std::string conninfo(backend->dsn_.Reveal());
    PGconn* conn = PQconnectdb(conninfo.c_str());
    WipeString(conninfo);
    backend->all_.push_back(conn);
    // Server notices ("relation exists, skipping") are not ours to print.
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    if (PQstatus(conn) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL: ", ConnectionError(conn)));
    }
    absl::MutexLock lock(&backend->mu_);
    backend->idle_.push_back(conn);
  }
  RETURN_IF_ERROR(backend->Migrate(migrations));
  return backend;
}

PostgresBackend::~PostgresBackend() {
  for (PGconn* conn : all_) PQfinish(conn);
}

PGconn* PostgresBackend::Borrow() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::vector<PGconn*>* idle) { return !idle->empty(); }, &idle_));
  PGconn* conn = idle_.back();
  idle_.pop_back();
  return conn;
}

void PostgresBackend::Return(PGconn* conn) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(conn);
}

absl::Status PostgresBackend::InTransaction(const std::function<absl::Status(SqlSession&)>& body) {
  PGconn* conn = Borrow();
  absl::Status status;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (PQstatus(conn) != CONNECTION_OK) PQreset(conn);
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    status = Exec(conn, "BEGIN");
    if (status.code() == absl::StatusCode::kUnavailable) {
      PQreset(conn);
      continue;  // nothing ran yet: safe to retry on the fresh connection
    }
    break;
  }
  if (status.ok()) {
    PostgresSession session(conn);
    status = body(session);
    if (status.ok()) {
      status = Exec(conn, "COMMIT");
    } else if (PQstatus(conn) == CONNECTION_OK) {
      Exec(conn, "ROLLBACK").IgnoreError();
    }
  }
  Return(conn);
  return status;
}

absl::Status PostgresBackend::Migrate(const std::vector<PostgresMigration>& migrations) {
  return InTransaction([&](SqlSession& s) -> absl::Status {
    // One replica migrates at a time; the others wait here, then find nothing
    // to do.
    RETURN_IF_ERROR(s.Query("SELECT pg_advisory_xact_lock(7345189)", {}).status());
    RETURN_IF_ERROR(
        s.Execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY NOT NULL)", {}).status());
    ASSIGN_OR_RETURN(auto rows, s.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}));
    const int64_t current = rows.empty() ? 0 : rows[0][0].AsInt();
    const int newest = migrations.empty() ? 0 : migrations.back().version;
    if (current > newest) {
      return absl::FailedPreconditionError(absl::StrCat("the PostgreSQL schema has version ", current,
                                                        " but this tokenbrokerd knows only up to ", newest,
                                                        "; run the newer tokenbrokerd that wrote it"));
    }
    for (const PostgresMigration& m : migrations) {
      if (m.version <= current) continue;
      absl::Status st = s.Execute(m.sql, {}).status();
      if (!st.ok()) {
        return absl::Status(st.code(), absl::StrCat("schema migration to version ", m.version, " failed: ",
                                                    st.message()));
      }
      RETURN_IF_ERROR(
          s.Execute("INSERT INTO schema_migrations (version) VALUES (?)", {SqlValue::Int(m.version)}).status());
    }
    return absl::OkStatus();
  });
}

}  // namespace tokenbroker
