#include "service/store/postgres_backend.h"

#include <libpq-fe.h>

#include <string_view>

#include "absl/container/flat_hash_map.h"
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

absl::Status Exec(PGconn* conn, const char* sql) {
  Result res(PQexec(conn, sql));
  if (res == nullptr || PQresultStatus(res.get()) != PGRES_COMMAND_OK) return ResultError(conn, res.get());
  return absl::OkStatus();
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

// Parameters in libpq's form: text, or binary for bytes; NULL as nullptr.
struct BoundParams {
  explicit BoundParams(const std::vector<SqlValue>& params)
      : storage(params.size()), values(params.size()), lengths(params.size()), formats(params.size()) {
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& v = params[i].v;
      if (std::holds_alternative<std::monostate>(v)) continue;
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
  }
  int count() const { return static_cast<int>(values.size()); }

  std::vector<std::string> storage;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
};

// A result's rows; integers by their column type, bytea decoded.
std::vector<SqlRow> RowsOf(const PGresult* res) {
  std::vector<SqlRow> rows;
  const int nrows = PQntuples(res);
  const int ncols = PQnfields(res);
  rows.reserve(static_cast<size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    SqlRow row;
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(res, r, c)) {
        row.push_back(SqlValue::Null());
        continue;
      }
      const char* text = PQgetvalue(res, r, c);
      const unsigned type = PQftype(res, c);
      if (type == kInt8Oid || type == kInt4Oid || type == kInt2Oid) {
        int64_t v = 0;
        (void)absl::SimpleAtoi(text, &v);
        row.push_back(SqlValue::Int(v));
      } else if (type == kByteaOid) {
        // Text format of bytea: "\x" followed by hex.
        std::string bytes = absl::HexStringToBytes(absl::string_view(text).substr(2));
        row.push_back(SqlValue::Bytes(std::move(bytes)));
      } else {
        row.push_back(SqlValue::Text(std::string(text, static_cast<size_t>(PQgetlength(res, r, c)))));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

bool IsStaleStatement(const PGresult* res) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) return false;
  // "cached plan must not change result type" (a schema change altered what
  // a prepared statement returns), or a prepared statement that is gone.
  return std::string_view(state) == "0A000" || std::string_view(state) == "26000";
}

}  // namespace

// One pooled connection and the statements prepared on it. Each SQL text with
// parameters is prepared once per connection and run by name after that:
// parsing and planning the broker's short statements were about 40% of
// PostgreSQL's CPU time. Used by one borrower at a time.
class PostgresConnection {
 public:
  explicit PostgresConnection(PGconn* conn) : conn_(conn) {}
  ~PostgresConnection() { PQfinish(conn_); }

  PGconn* get() const { return conn_; }

  // Reconnects if the connection was lost (or `always`); the statements
  // prepared on the old session went with it.
  void ResetIf(bool always) {
    if (!always && PQstatus(conn_) == CONNECTION_OK) return;
    PQreset(conn_);
    // Server notices ("relation exists, skipping") are not ours to print.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    prepared_.clear();
    stale_ = false;
  }

  // The name `sql` (our text, with `?` placeholders) was prepared under on
  // this connection, or nullptr when it has not been prepared yet.
  const std::string* Find(absl::string_view sql) const {
    auto it = prepared_.find(sql);
    return it == prepared_.end() ? nullptr : &it->second;
  }
  // A new name for a statement; Remember it once the server accepted it.
  // Names are never reused: a statement prepared in a pipeline that failed
  // later may exist without being remembered.
  std::string NewName() { return absl::StrCat("tb", next_name_++); }
  void Remember(absl::string_view sql, std::string name) { prepared_[sql] = std::move(name); }

  // Noted when the server refused a prepared statement as stale; Forget then
  // drops every one of them once the transaction is over.
  void NoteIfStale(const PGresult* res) { stale_ = stale_ || IsStaleStatement(res); }
  // Between transactions: drops every prepared statement if one was stale or
  // there are many. True if one was stale.
  bool ForgetIfStaleOrMany() {
    const bool stale = stale_;
    if (!stale_ && prepared_.size() < kMaxPrepared) return false;
    if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) == PQTRANS_IDLE) {
      Result res(PQexec(conn_, "DEALLOCATE ALL"));
      prepared_.clear();
      stale_ = false;
    }
    return stale;
  }

  // Runs `sql` with `params` in one round trip once prepared (two the first
  // time); without parameters, with the simple protocol, which also runs
  // several statements at once (migrations).
  absl::StatusOr<Result> Run(absl::string_view sql, const std::vector<SqlValue>& params) {
    Result res;
    if (params.empty()) {
      res.reset(PQexec(conn_, std::string(sql).c_str()));
    } else {
      const std::string* name = Find(sql);
      if (name == nullptr) {
        std::string fresh = NewName();
        Result prepared(PQprepare(conn_, fresh.c_str(), NumberPlaceholders(sql).c_str(),
                                  static_cast<int>(params.size()), nullptr));
        if (prepared == nullptr || PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) {
          return ResultError(conn_, prepared.get());
        }
        Remember(sql, std::move(fresh));
        name = Find(sql);
      }
      const BoundParams bound(params);
      res.reset(PQexecPrepared(conn_, name->c_str(), bound.count(), bound.values.data(), bound.lengths.data(),
                               bound.formats.data(), 0));
    }
    const ExecStatusType st = res != nullptr ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      NoteIfStale(res.get());
      return ResultError(conn_, res.get());
    }
    return res;
  }

  // Sends BEGIN (a read-only snapshot), `queries` (prepared first where they
  // are new to this connection) and COMMIT as one pipeline and reads their
  // results: one round trip. On a failed statement the rest of the pipeline
  // is skipped and the transaction rolled back.
  absl::StatusOr<std::vector<std::vector<SqlRow>>> PipelinedRead(const std::vector<SqlQuery>& queries) {
    if (PQenterPipelineMode(conn_) != 1) return ResultError(conn_, nullptr);
    // What each result in the pipeline answers: BEGIN, a prepare, a query,
    // COMMIT.
    struct Expected {
      enum Kind { kOther, kPrepare, kQuery } kind;
      absl::string_view sql;
      std::string name;
    };
    std::vector<Expected> expected;
    bool sent = PQsendQueryParams(conn_, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, nullptr, nullptr,
                                  nullptr, nullptr, 0) == 1;
    expected.push_back({Expected::kOther, {}, ""});
    for (size_t i = 0; sent && i < queries.size(); ++i) {
      const absl::string_view sql = queries[i].sql;
      const BoundParams bound(queries[i].params);
      std::string name;
      if (const std::string* known = Find(sql)) {
        name = *known;
      } else {
        name = NewName();
        sent = PQsendPrepare(conn_, name.c_str(), NumberPlaceholders(sql).c_str(), bound.count(), nullptr) == 1;
        expected.push_back({Expected::kPrepare, sql, name});
      }
      sent = sent && PQsendQueryPrepared(conn_, name.c_str(), bound.count(), bound.values.data(), bound.lengths.data(),
                                         bound.formats.data(), 0) == 1;
      expected.push_back({Expected::kQuery, {}, ""});
    }
    sent = sent && PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1;
    expected.push_back({Expected::kOther, {}, ""});
    sent = sent && PQpipelineSync(conn_) == 1;
    if (!sent) {
      absl::Status error = ResultError(conn_, nullptr);
      ResetIf(true);  // the pipeline's state is unknown: start over
      return error;
    }
    // One result per message sent, each followed by a null, then the sync.
    std::vector<std::vector<SqlRow>> results;
    absl::Status failed;
    for (Expected& e : expected) {
      Result res(PQgetResult(conn_));
      if (res == nullptr) {
        failed = ResultError(conn_, nullptr);
        ResetIf(true);
        return failed;
      }
      const ExecStatusType st = PQresultStatus(res.get());
      const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
      if (ok && e.kind == Expected::kPrepare) {
        Remember(e.sql, std::move(e.name));
      } else if (ok && e.kind == Expected::kQuery) {
        results.push_back(RowsOf(res.get()));
      } else if (!ok && failed.ok()) {
        // PGRES_PIPELINE_ABORTED: skipped after an earlier failure.
        NoteIfStale(res.get());
        failed = st == PGRES_PIPELINE_ABORTED ? absl::AbortedError("PostgreSQL: pipeline aborted")
                                              : ResultError(conn_, res.get());
      }
      while (PGresult* rest = PQgetResult(conn_)) PQclear(rest);
    }
    Result sync(PQgetResult(conn_));
    if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC || PQexitPipelineMode(conn_) != 1) {
      if (failed.ok()) failed = ResultError(conn_, nullptr);
      ResetIf(true);
      return failed;
    }
    if (!failed.ok()) {
      if (PQtransactionStatus(conn_) != PQTRANS_IDLE) Exec(conn_, "ROLLBACK").IgnoreError();
      return failed;
    }
    return results;
  }

 private:
  // Statements kept per connection; past it they are all dropped and
  // prepared again as used (texts with inlined page sizes can be many).
  static constexpr size_t kMaxPrepared = 256;

  PGconn* const conn_;
  absl::flat_hash_map<std::string, std::string> prepared_;
  uint64_t next_name_ = 0;
  bool stale_ = false;
};

namespace {

class PostgresSession final : public SqlSession {
 public:
  explicit PostgresSession(PostgresConnection& conn) : conn_(conn) {}

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, const std::vector<SqlValue>& params,
                                            const std::vector<int>&) override {
    ASSIGN_OR_RETURN(Result res, conn_.Run(sql, params));
    return RowsOf(res.get());
  }

  absl::StatusOr<int64_t> Execute(absl::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(Result res, conn_.Run(sql, params));
    int64_t changed = 0;
    (void)absl::SimpleAtoi(PQcmdTuples(res.get()), &changed);
    return changed;
  }

 private:
  PostgresConnection& conn_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresBackend>> PostgresBackend::Open(
    const Secret& dsn, int pool_size, const std::vector<PostgresMigration>& migrations) {
  std::unique_ptr<PostgresBackend> backend(new PostgresBackend(dsn.Clone()));
  if (pool_size < 1) pool_size = 4;
  for (int i = 0; i < pool_size; ++i) {
    std::string conninfo(backend->dsn_.Reveal());
    PGconn* conn = PQconnectdb(conninfo.c_str());
    WipeString(conninfo);
    backend->all_.push_back(std::make_unique<PostgresConnection>(conn));
    // Server notices ("relation exists, skipping") are not ours to print.
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
    if (PQstatus(conn) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL: ", ConnectionError(conn)));
    }
    absl::MutexLock lock(&backend->mu_);
    backend->idle_.push_back(backend->all_.back().get());
  }
  RETURN_IF_ERROR(backend->Migrate(migrations));
  return backend;
}

PostgresBackend::PostgresBackend(Secret dsn) : dsn_(std::move(dsn)) {}

PostgresBackend::~PostgresBackend() = default;

PostgresConnection* PostgresBackend::Borrow() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::vector<PostgresConnection*>* idle) { return !idle->empty(); }, &idle_));
  PostgresConnection* conn = idle_.back();
  idle_.pop_back();
  return conn;
}

void PostgresBackend::Return(PostgresConnection* conn) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(conn);
}

absl::Status PostgresBackend::InTransaction(const std::function<absl::Status(SqlSession&)>& body) {
  PostgresConnection* conn = Borrow();
  absl::Status status;
  for (int attempt = 0; attempt < 2; ++attempt) {
    conn->ResetIf(false);
    status = Exec(conn->get(), "BEGIN");
    if (status.code() == absl::StatusCode::kUnavailable) {
      conn->ResetIf(true);
      continue;  // nothing ran yet: safe to retry on the fresh connection
    }
    break;
  }
  if (status.ok()) {
    PostgresSession session(*conn);
    status = body(session);
    if (status.ok()) {
      status = Exec(conn->get(), "COMMIT");
    } else if (PQstatus(conn->get()) == CONNECTION_OK) {
      Exec(conn->get(), "ROLLBACK").IgnoreError();
    }
    conn->ForgetIfStaleOrMany();
  }
  Return(conn);
  return status;
}

absl::StatusOr<std::vector<std::vector<SqlRow>>> PostgresBackend::ReadSnapshot(const std::vector<SqlQuery>& queries) {
  PostgresConnection* conn = Borrow();
  absl::StatusOr<std::vector<std::vector<SqlRow>>> results;
  // A read changes nothing: it is tried once more after a lost connection (a
  // server restart) on a fresh one, or after a schema change made a prepared
  // statement stale, with the statements prepared again.
  for (int attempt = 0; attempt < 2; ++attempt) {
    conn->ResetIf(false);
    results = conn->PipelinedRead(queries);
    const bool stale = conn->ForgetIfStaleOrMany();
    if (results.ok() || !(stale || absl::IsUnavailable(results.status()))) break;
  }
  Return(conn);
  return results;
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
