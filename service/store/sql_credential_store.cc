#include "service/store/sql_credential_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

// Times are microseconds since the epoch; NULL for "never" (InfinitePast) and,
// for not_after, "no expiry" (InfiniteFuture).
SqlValue TimeValue(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return SqlValue::Null();
  return SqlValue::Int(absl::ToUnixMicros(t));
}
absl::Time TimeOf(const SqlValue& v, absl::Time null_means = absl::InfinitePast()) {
  return v.is_null() ? null_means : absl::FromUnixMicros(v.AsInt());
}

constexpr char kAppColumns[] =
    "id, provider, tenant, issuer, authority_host, client_id, imap_host, imap_port, imap_security, token_endpoint, "
    "authorization_endpoint, device_authorization_endpoint, assertion_algorithm, source, create_time, update_time, "
    "client_secret_auth, version";

std::vector<SqlValue> AppValues(const App& a, int64_t version) {
  return {SqlValue::Text(a.id),
          SqlValue::Int(static_cast<int64_t>(a.provider)),
          SqlValue::Text(a.tenant),
          SqlValue::Text(a.issuer),
          SqlValue::Text(a.authority_host),
          SqlValue::Text(a.client_id),
          SqlValue::Text(a.imap_host),
          SqlValue::Int(a.imap_port),
          SqlValue::Int(static_cast<int64_t>(a.imap_security)),
          SqlValue::Text(a.token_endpoint),
          SqlValue::Text(a.authorization_endpoint),
          SqlValue::Text(a.device_authorization_endpoint),
          SqlValue::Int(static_cast<int64_t>(a.assertion_algorithm)),
          SqlValue::Int(static_cast<int64_t>(a.source)),
          TimeValue(a.create_time),
          TimeValue(a.update_time),
          SqlValue::Int(static_cast<int64_t>(a.client_secret_auth)),
          SqlValue::Int(version)};
}

App AppFromRow(const SqlRow& r) {
  App a;
  a.id = r[0].AsString();
  a.provider = static_cast<Provider>(r[1].AsInt());
  a.tenant = r[2].AsString();
  a.issuer = r[3].AsString();
  a.authority_host = r[4].AsString();
  a.client_id = r[5].AsString();
  a.imap_host = r[6].AsString();
  a.imap_port = static_cast<int>(r[7].AsInt());
  a.imap_security = static_cast<ImapSecurity>(r[8].AsInt());
  a.token_endpoint = r[9].AsString();
  a.authorization_endpoint = r[10].AsString();
  a.device_authorization_endpoint = r[11].AsString();
  a.assertion_algorithm = static_cast<AssertionAlgorithm>(r[12].AsInt());
  a.source = static_cast<RecordSource>(r[13].AsInt());
  a.create_time = TimeOf(r[14]);
  a.update_time = TimeOf(r[15]);
  a.client_secret_auth = static_cast<ClientSecretAuth>(r[16].AsInt());
  a.version = r[17].AsInt();
  return a;
}

constexpr char kCredentialColumns[] =
    "app_id, id, position, kind, not_after, thumbprint_sha1, thumbprint_sha256, subject, service_account_email, "
    "certificate_pem, sealed_secret, failing, error_oauth, error_code, error_message, error_time, create_time";
constexpr int kCredentialSealedColumn = 10;

std::vector<SqlValue> CredentialValues(const std::string& app_id, int position, const AppCredential& c) {
  return {SqlValue::Text(app_id),
          SqlValue::Text(c.id),
          SqlValue::Int(position),
          SqlValue::Int(static_cast<int64_t>(c.kind)),
          TimeValue(c.not_after),
          SqlValue::Text(c.thumbprint_sha1),
          SqlValue::Text(c.thumbprint_sha256),
          SqlValue::Text(c.subject),
          SqlValue::Text(c.service_account_email),
          SqlValue::Text(c.certificate_pem),
          SqlValue::Bytes(c.sealed_secret),
          SqlValue::Int(c.failing ? 1 : 0),
          SqlValue::Text(c.last_error.oauth_error),
          SqlValue::Int(c.last_error.provider_code),
          SqlValue::Text(c.last_error.message),
          TimeValue(c.last_error.time),
          TimeValue(c.create_time)};
}

AppCredential CredentialFromRow(const SqlRow& r) {
  AppCredential c;
  c.id = r[1].AsString();
  c.kind = static_cast<CredentialKind>(r[3].AsInt());
  c.not_after = TimeOf(r[4], absl::InfiniteFuture());
  c.thumbprint_sha1 = r[5].AsString();
  c.thumbprint_sha256 = r[6].AsString();
  c.subject = r[7].AsString();
  c.service_account_email = r[8].AsString();
  c.certificate_pem = r[9].AsString();
  c.sealed_secret = r[10].AsString();
  c.failing = r[11].AsInt() != 0;
  c.last_error.oauth_error = r[12].AsString();
  c.last_error.provider_code = r[13].AsInt();
  c.last_error.message = r[14].AsString();
  c.last_error.time = TimeOf(r[15]);
  c.create_time = TimeOf(r[16]);
  return c;
}

constexpr char kGrantColumns[] =
    "id, app_id, mailbox, kind, subject, scopes, state, error_oauth, error_code, error_message, error_time, source, "
    "create_time, consent_time, refresh_token_last_used_time, last_refresh_time, sealed_refresh_token, version";
constexpr int kGrantSealedColumn = 16;

std::vector<SqlValue> GrantValues(const Grant& g, int64_t version) {
  return {SqlValue::Text(g.id),
          SqlValue::Text(g.app),
          SqlValue::Text(g.mailbox),
          SqlValue::Int(static_cast<int64_t>(g.kind)),
          SqlValue::Text(g.subject),
          SqlValue::Text(absl::StrJoin(g.scopes, " ")),
          SqlValue::Int(static_cast<int64_t>(g.state)),
          SqlValue::Text(g.last_error.oauth_error),
          SqlValue::Int(g.last_error.provider_code),
          SqlValue::Text(g.last_error.message),
          TimeValue(g.last_error.time),
          SqlValue::Int(static_cast<int64_t>(g.source)),
          TimeValue(g.create_time),
          TimeValue(g.consent_time),
          TimeValue(g.refresh_token_last_used_time),
          TimeValue(g.last_refresh_time),
          g.sealed_refresh_token.empty() ? SqlValue::Null() : SqlValue::Bytes(g.sealed_refresh_token),
          SqlValue::Int(version)};
}

Grant GrantFromRow(const SqlRow& r) {
  Grant g;
  g.id = r[0].AsString();
  g.app = r[1].AsString();
  g.mailbox = r[2].AsString();
  g.kind = static_cast<GrantKind>(r[3].AsInt());
  g.subject = r[4].AsString();
  g.scopes = absl::StrSplit(r[5].AsString(), ' ', absl::SkipEmpty());
  g.state = static_cast<GrantState>(r[6].AsInt());
  g.last_error.oauth_error = r[7].AsString();
  g.last_error.provider_code = r[8].AsInt();
  g.last_error.message = r[9].AsString();
  g.last_error.time = TimeOf(r[10]);
  g.source = static_cast<RecordSource>(r[11].AsInt());
  g.create_time = TimeOf(r[12]);
  g.consent_time = TimeOf(r[13]);
  g.refresh_token_last_used_time = TimeOf(r[14]);
  g.last_refresh_time = TimeOf(r[15]);
  g.sealed_refresh_token = r[16].AsString();
  g.version = r[17].AsInt();
  return g;
}

std::string Placeholders(int n) {
  std::vector<std::string> marks(static_cast<size_t>(n), "?");
  return absl::StrJoin(marks, ", ");
}

absl::Status WriteLabels(SqlSession& s, const char* table, const char* owner_column, const std::string& owner,
                         const std::map<std::string, std::string>& labels) {
  RETURN_IF_ERROR(
      s.Execute(absl::StrCat("DELETE FROM ", table, " WHERE ", owner_column, " = ?"), {SqlValue::Text(owner)})
          .status());
  for (const auto& [key, value] : labels) {
    RETURN_IF_ERROR(s.Execute(absl::StrCat("INSERT INTO ", table, " (", owner_column, ", key, value) VALUES (?, ?, ?)"),
                              {SqlValue::Text(owner), SqlValue::Text(key), SqlValue::Text(value)})
                        .status());
  }
  return absl::OkStatus();
}

using Labels = std::map<std::string, std::string>;

// The labels of every row of `owner_table` that `where` (over alias `o`)
// selects: one query however many owners; LabelsByOwner reads its rows.
SqlQuery LabelQuery(const char* label_table, const char* owner_column, const char* owner_table,
                    const std::string& where, std::vector<SqlValue> params) {
  return {absl::StrCat("SELECT l.", owner_column, ", l.key, l.value FROM ", label_table, " l JOIN ", owner_table,
                       " o ON o.id = l.", owner_column, " WHERE ", where),
          std::move(params), {}};
}

std::map<std::string, Labels> LabelsByOwner(const std::vector<SqlRow>& rows) {
  std::map<std::string, Labels> labels;
  for (const SqlRow& r : rows) labels[r[0].AsString()][r[1].AsString()] = r[2].AsString();
  return labels;
}

absl::Status WriteCredentials(SqlSession& s, const App& app) {
  RETURN_IF_ERROR(s.Execute("DELETE FROM app_credentials WHERE app_id = ?", {SqlValue::Text(app.id)}).status());
  for (size_t i = 0; i < app.credentials.size(); ++i) {
    RETURN_IF_ERROR(s.Execute(absl::StrCat("INSERT INTO app_credentials (", kCredentialColumns, ") VALUES (",
                                           Placeholders(17), ")"),
                              CredentialValues(app.id, static_cast<int>(i), app.credentials[i]))
                        .status());
  }
  return absl::OkStatus();
}

// The apps that `where` (over alias `o`) selects, with their labels and
// credentials: three queries on one snapshot however many apps.
absl::StatusOr<std::vector<App>> ReadApps(SqlBackend& backend, const std::string& where,
                                          const std::vector<SqlValue>& params) {
  ASSIGN_OR_RETURN(
      auto results,
      backend.ReadSnapshot(
          {{absl::StrCat("SELECT ", kAppColumns, " FROM apps o WHERE ", where, " ORDER BY id"), params, {}},
           LabelQuery("app_labels", "app_id", "apps", where, params),
           {absl::StrCat("SELECT ", kCredentialColumns,
                         " FROM app_credentials WHERE app_id IN (SELECT id FROM apps o WHERE ", where,
                         ") ORDER BY app_id, position"),
            params,
            {kCredentialSealedColumn}}}));
  std::vector<App> apps;
  for (const SqlRow& r : results[0]) apps.push_back(AppFromRow(r));
  std::map<std::string, Labels> labels = LabelsByOwner(results[1]);
  std::map<std::string, std::vector<AppCredential>> by_app;
  for (const SqlRow& r : results[2]) by_app[r[0].AsString()].push_back(CredentialFromRow(r));
  for (App& app : apps) {
    app.labels = std::move(labels[app.id]);
    app.credentials = std::move(by_app[app.id]);
  }
  return apps;
}

// The grants that `where` (over alias `o`) selects, the first `limit` by id
// (0: all), with their labels: two queries on one snapshot however many grants.
absl::StatusOr<std::vector<Grant>> ReadGrants(SqlBackend& backend, const std::string& where,
                                              const std::vector<SqlValue>& params, size_t limit = 0) {
  const std::string page = limit > 0 ? absl::StrCat(" LIMIT ", limit) : "";
  // A page: the labels of the grants up to its last one.
  std::string label_where = where;
  std::vector<SqlValue> label_params = params;
  if (limit > 0) {
    absl::StrAppend(&label_where, " AND o.id <= (SELECT MAX(p.id) FROM (SELECT o.id FROM grants o WHERE ", where,
                    " ORDER BY o.id", page, ") p)");
    label_params.insert(label_params.end(), params.begin(), params.end());
  }
  ASSIGN_OR_RETURN(auto results,
                   backend.ReadSnapshot(
                       {{absl::StrCat("SELECT ", kGrantColumns, " FROM grants o WHERE ", where, " ORDER BY id", page),
                         params,
                         {kGrantSealedColumn}},
                        LabelQuery("grant_labels", "grant_id", "grants", label_where, std::move(label_params))}));
  std::vector<Grant> grants;
  for (const SqlRow& r : results[0]) grants.push_back(GrantFromRow(r));
  std::map<std::string, Labels> labels = LabelsByOwner(results[1]);
  for (Grant& g : grants) g.labels = std::move(labels[g.id]);
  return grants;
}

}  // namespace

absl::Status SqlCredentialStore::CreateApp(const App& app) {
  absl::Status s = backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    RETURN_IF_ERROR(
        s.Execute(absl::StrCat("INSERT INTO apps (", kAppColumns, ") VALUES (", Placeholders(18), ")"),
                  AppValues(app, 1))
            .status());
    RETURN_IF_ERROR(WriteLabels(s, "app_labels", "app_id", app.id, app.labels));
    return WriteCredentials(s, app);
  });
  if (s.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat("app \"", app.id, "\" already exists"));
  }
  return s;
}

absl::StatusOr<App> SqlCredentialStore::GetApp(absl::string_view id) {
  ASSIGN_OR_RETURN(std::vector<App> apps, ReadApps(*backend_, "o.id = ?", {SqlValue::Text(std::string(id))}));
  if (apps.empty()) return RecordNotFound("app", id);
  return std::move(apps.front());
}

absl::StatusOr<std::vector<App>> SqlCredentialStore::ListApps() { return ReadApps(*backend_, "1 = 1", {}); }

absl::StatusOr<int64_t> SqlCredentialStore::UpdateApp(const App& app) {
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    std::vector<SqlValue> values = AppValues(app, app.version + 1);
    values.erase(values.begin());  // id goes to the WHERE clause
    values.push_back(SqlValue::Text(app.id));
    values.push_back(SqlValue::Int(app.version));
    ASSIGN_OR_RETURN(int64_t changed,
                     s.Execute("UPDATE apps SET provider = ?, tenant = ?, issuer = ?, authority_host = ?, "
                               "client_id = ?, imap_host = ?, imap_port = ?, imap_security = ?, token_endpoint = ?, "
                               "authorization_endpoint = ?, device_authorization_endpoint = ?, "
                               "assertion_algorithm = ?, source = ?, create_time = ?, update_time = ?, "
                               "client_secret_auth = ?, version = ? "
                               "WHERE id = ? AND version = ?",
                               values));
    if (changed == 0) {
      ASSIGN_OR_RETURN(auto rows, s.Query("SELECT version FROM apps WHERE id = ?", {SqlValue::Text(app.id)}));
      return rows.empty() ? RecordNotFound("app", app.id) : RecordVersionMoved("app", app.id, app.version);
    }
    RETURN_IF_ERROR(WriteLabels(s, "app_labels", "app_id", app.id, app.labels));
    return WriteCredentials(s, app);
  }));
  return app.version + 1;
}

absl::Status SqlCredentialStore::DeleteApp(absl::string_view id, bool force) {
  const SqlValue key = SqlValue::Text(std::string(id));
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto grants, s.Query("SELECT id FROM grants WHERE app_id = ? ORDER BY id", {key}));
    if (!grants.empty() && !force) {
      std::vector<std::string> ids;
      for (const SqlRow& r : grants) ids.push_back(r[0].AsString());
      return absl::FailedPreconditionError(absl::StrCat("app \"", id, "\" is used by ", grants.size(),
                                                        " grant(s) (", absl::StrJoin(ids, ", "),
                                                        "); delete them first or delete with force"));
    }
    RETURN_IF_ERROR(s.Execute("DELETE FROM grants WHERE app_id = ?", {key}).status());
    ASSIGN_OR_RETURN(int64_t changed, s.Execute("DELETE FROM apps WHERE id = ?", {key}));
    return changed == 0 ? RecordNotFound("app", id) : absl::OkStatus();
  });
}

absl::Status SqlCredentialStore::CreateGrant(const Grant& grant) {
  absl::Status s = backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto app, s.Query("SELECT id FROM apps WHERE id = ?", {SqlValue::Text(grant.app)}));
    if (app.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("grant.app: app \"", grant.app, "\" does not exist"));
    }
    RETURN_IF_ERROR(
        s.Execute(absl::StrCat("INSERT INTO grants (", kGrantColumns, ") VALUES (", Placeholders(18), ")"),
                  GrantValues(grant, 1))
            .status());
    return WriteLabels(s, "grant_labels", "grant_id", grant.id, grant.labels);
  });
  if (s.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat("grant \"", grant.id, "\" already exists"));
  }
  return s;
}

absl::StatusOr<Grant> SqlCredentialStore::GetGrant(absl::string_view id) {
  ASSIGN_OR_RETURN(std::vector<Grant> grants,
                   ReadGrants(*backend_, "o.id = ?", {SqlValue::Text(std::string(id))}));
  if (grants.empty()) return RecordNotFound("grant", id);
  return std::move(grants.front());
}

absl::StatusOr<std::vector<Grant>> SqlCredentialStore::ListGrants(const GrantFilter& filter) {
  std::string where = "1 = 1";
  std::vector<SqlValue> params;
  if (!filter.app.empty()) {
    where += " AND o.app_id = ?";
    params.push_back(SqlValue::Text(filter.app));
  }
  if (filter.state.has_value()) {
    where += " AND o.state = ?";
    params.push_back(SqlValue::Int(static_cast<int64_t>(*filter.state)));
  }
  if (!filter.after_id.empty()) {
    where += " AND o.id > ?";
    params.push_back(SqlValue::Text(filter.after_id));
  }
  return ReadGrants(*backend_, where, params, filter.limit);
}

absl::StatusOr<int64_t> SqlCredentialStore::UpdateGrant(const Grant& grant) {
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) { return WriteGrant(s, grant); }));
  return grant.version + 1;
}

absl::Status SqlCredentialStore::WriteGrant(SqlSession& s, const Grant& grant) {
  std::vector<SqlValue> values = GrantValues(grant, grant.version + 1);
  values.erase(values.begin());
  values.push_back(SqlValue::Text(grant.id));
  values.push_back(SqlValue::Int(grant.version));
  ASSIGN_OR_RETURN(int64_t changed,
                   s.Execute("UPDATE grants SET app_id = ?, mailbox = ?, kind = ?, subject = ?, scopes = ?, "
                             "state = ?, error_oauth = ?, error_code = ?, error_message = ?, error_time = ?, "
                             "source = ?, create_time = ?, consent_time = ?, refresh_token_last_used_time = ?, "
                             "last_refresh_time = ?, sealed_refresh_token = ?, version = ? "
                             "WHERE id = ? AND version = ?",
                             values));
  if (changed == 0) {
    ASSIGN_OR_RETURN(auto rows, s.Query("SELECT version FROM grants WHERE id = ?", {SqlValue::Text(grant.id)}));
    return rows.empty() ? RecordNotFound("grant", grant.id) : RecordVersionMoved("grant", grant.id, grant.version);
  }
  return WriteLabels(s, "grant_labels", "grant_id", grant.id, grant.labels);
}

absl::Status SqlCredentialStore::CheckLease(SqlSession& s, const RefreshLease& lease) {
  ASSIGN_OR_RETURN(auto rows, s.Query(absl::StrCat("SELECT holder, fence FROM refresh_leases WHERE grant_id = ?",
                                                   backend_->ForUpdateSql()),
                                      {SqlValue::Text(lease.grant)}));
  if (rows.empty() || rows[0][0].AsString() != lease.holder || rows[0][1].AsInt() != lease.fence) {
    return LeaseTakenOver(lease.grant, lease.holder, lease.fence);
  }
  return absl::OkStatus();
}

absl::StatusOr<RefreshLease> SqlCredentialStore::AcquireRefreshLease(absl::string_view grant_id,
                                                                     absl::string_view holder, absl::Duration ttl) {
  RefreshLease lease;
  lease.grant = std::string(grant_id);
  const SqlValue key = SqlValue::Text(lease.grant);
  const int64_t ttl_us = absl::ToInt64Microseconds(ttl);
  absl::Status status = backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto rows,
                     s.Query(absl::StrCat("SELECT holder, fence, expire_time, ", backend_->NowMicrosSql(),
                                          " FROM refresh_leases WHERE grant_id = ?", backend_->ForUpdateSql()),
                             {key}));
    if (rows.empty()) {
      ASSIGN_OR_RETURN(auto found, s.Query("SELECT 1 FROM grants WHERE id = ?", {key}));
      if (found.empty()) return RecordNotFound("grant", grant_id);
      RETURN_IF_ERROR(s.Execute(absl::StrCat("INSERT INTO refresh_leases (grant_id, holder, fence, expire_time) "
                                             "VALUES (?, ?, 1, ",
                                             backend_->NowMicrosSql(), " + ?)"),
                                {key, SqlValue::Text(std::string(holder)), SqlValue::Int(ttl_us)})
                          .status());
      lease = {lease.grant, std::string(holder), 1, true, false, ttl};
      return absl::OkStatus();
    }
    const std::string current = rows[0][0].AsString();
    const int64_t fence = rows[0][1].AsInt();
    const int64_t left_us = rows[0][2].AsInt() - rows[0][3].AsInt();
    if (left_us > 0 && !current.empty() && current != holder) {
      lease = {lease.grant, current, fence, false, false, absl::Microseconds(left_us)};
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(s.Execute(absl::StrCat("UPDATE refresh_leases SET holder = ?, fence = ?, expire_time = ",
                                           backend_->NowMicrosSql(), " + ? WHERE grant_id = ?"),
                              {SqlValue::Text(std::string(holder)), SqlValue::Int(fence + 1), SqlValue::Int(ttl_us),
                               key})
                        .status());
    // An unreleased lease of another holder that ran out: its holder died or
    // stalled.
    lease = {lease.grant, std::string(holder), fence + 1, true, !current.empty() && current != holder, ttl};
    return absl::OkStatus();
  });
  if (absl::IsAlreadyExists(status)) {
    // Another replica inserted the first lease of this grant at the same time.
    lease.acquired = false;
    lease.remaining = ttl;
    return lease;
  }
  RETURN_IF_ERROR(status);
  return lease;
}

absl::Status SqlCredentialStore::ReleaseRefreshLease(const RefreshLease& lease) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    return s
        .Execute("UPDATE refresh_leases SET holder = '', expire_time = 0 WHERE grant_id = ? AND holder = ? AND "
                 "fence = ?",
                 {SqlValue::Text(lease.grant), SqlValue::Text(lease.holder), SqlValue::Int(lease.fence)})
        .status();
  });
}

absl::StatusOr<int64_t> SqlCredentialStore::UpdateGrantUnderLease(const Grant& grant, const RefreshLease& lease) {
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    RETURN_IF_ERROR(CheckLease(s, lease));
    return WriteGrant(s, grant);
  }));
  return grant.version + 1;
}

absl::StatusOr<std::optional<SharedAccessToken>> SqlCredentialStore::GetSharedAccessToken(
    absl::string_view grant_id) {
  ASSIGN_OR_RETURN(auto results,
                   backend_->ReadSnapshot({{"SELECT sealed_token, token_type, scopes, expire_time, holder, fence, "
                                            "issue_time FROM access_tokens WHERE grant_id = ?",
                                            {SqlValue::Text(std::string(grant_id))},
                                            {0}}}));
  if (results[0].empty()) return std::nullopt;
  const SqlRow& r = results[0][0];
  return SharedAccessToken{r[0].AsString(), r[1].AsString(), absl::StrSplit(r[2].AsString(), ' ', absl::SkipEmpty()),
                           TimeOf(r[3]), r[4].AsString(), r[5].AsInt(), TimeOf(r[6])};
}

absl::Status SqlCredentialStore::PutSharedAccessToken(const SharedAccessToken& token, const RefreshLease& lease) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    RETURN_IF_ERROR(CheckLease(s, lease));
    const SqlValue key = SqlValue::Text(lease.grant);
    RETURN_IF_ERROR(s.Execute("DELETE FROM access_tokens WHERE grant_id = ?", {key}).status());
    RETURN_IF_ERROR(s.Execute("INSERT INTO access_tokens (grant_id, sealed_token, token_type, scopes, expire_time, "
                              "holder, fence, issue_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              {key, SqlValue::Bytes(token.sealed), SqlValue::Text(token.token_type),
                               SqlValue::Text(absl::StrJoin(token.scopes, " ")),
                               SqlValue::Int(absl::ToUnixMicros(token.expire_time)), SqlValue::Text(lease.holder),
                               SqlValue::Int(lease.fence), TimeValue(token.issue_time)})
                        .status());
    RETURN_IF_ERROR(s.Execute("UPDATE refresh_leases SET holder = '', expire_time = 0 WHERE grant_id = ?", {key})
                        .status());
    if (!backend_->NotifySql().empty()) {
      RETURN_IF_ERROR(
          s.Query(backend_->NotifySql(), {SqlValue::Text(absl::StrCat("token:", lease.grant))}).status());
    }
    return absl::OkStatus();
  });
}

absl::Status SqlCredentialStore::DeleteSharedAccessToken(absl::string_view grant_id) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    return s.Execute("DELETE FROM access_tokens WHERE grant_id = ?", {SqlValue::Text(std::string(grant_id))})
        .status();
  });
}

namespace {

constexpr char kConsentColumns[] = "consent_key, grant_id, caller, sealed, expire_time, next_poll";

PendingConsent ConsentFromRow(const SqlRow& r) {
  return PendingConsent{r[0].AsString(), r[1].AsString(), r[2].AsString(), r[3].AsString(),
                        TimeOf(r[4]),    TimeOf(r[5], absl::InfiniteFuture())};
}

std::vector<SqlValue> ConsentValues(const PendingConsent& c) {
  return {SqlValue::Text(c.key),     SqlValue::Text(c.grant),  SqlValue::Text(c.caller),
          SqlValue::Bytes(c.sealed), TimeValue(c.expire_time), TimeValue(c.next_poll)};
}

}  // namespace

absl::Status SqlCredentialStore::PutPendingConsent(const PendingConsent& consent) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    // Authorizations nobody completed go when they expire.
    RETURN_IF_ERROR(s.Execute(absl::StrCat("DELETE FROM pending_consents WHERE consent_key LIKE 'auth:%' AND "
                                           "expire_time < ",
                                           backend_->NowMicrosSql()),
                              {})
                        .status());
    RETURN_IF_ERROR(
        s.Execute("DELETE FROM pending_consents WHERE consent_key = ?", {SqlValue::Text(consent.key)}).status());
    return s
        .Execute(absl::StrCat("INSERT INTO pending_consents (", kConsentColumns, ") VALUES (?, ?, ?, ?, ?, ?)"),
                 ConsentValues(consent))
        .status();
  });
}

absl::StatusOr<std::optional<PendingConsent>> SqlCredentialStore::GetPendingConsent(absl::string_view key) {
  std::optional<PendingConsent> consent;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto rows, s.Query(absl::StrCat("SELECT ", kConsentColumns,
                                                     " FROM pending_consents WHERE consent_key = ?"),
                                        {SqlValue::Text(std::string(key))}, {3}));
    if (!rows.empty()) consent = ConsentFromRow(rows[0]);
    return absl::OkStatus();
  }));
  return consent;
}

absl::StatusOr<std::optional<PendingConsent>> SqlCredentialStore::TakePendingConsent(absl::string_view key) {
  std::optional<PendingConsent> consent;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    const SqlValue k = SqlValue::Text(std::string(key));
    ASSIGN_OR_RETURN(auto rows, s.Query(absl::StrCat("SELECT ", kConsentColumns,
                                                     " FROM pending_consents WHERE consent_key = ?",
                                                     backend_->ForUpdateSql()),
                                        {k}, {3}));
    if (rows.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(int64_t deleted, s.Execute("DELETE FROM pending_consents WHERE consent_key = ?", {k}));
    if (deleted == 1) consent = ConsentFromRow(rows[0]);
    return absl::OkStatus();
  }));
  return consent;
}

absl::StatusOr<std::vector<PendingConsent>> SqlCredentialStore::ClaimDueDeviceConsents(absl::Time now,
                                                                                      absl::Duration hold) {
  std::vector<PendingConsent> claimed;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto rows, s.Query(absl::StrCat("SELECT ", kConsentColumns,
                                                     " FROM pending_consents WHERE consent_key LIKE 'device:%' "
                                                     "AND next_poll <= ? ORDER BY consent_key"),
                                        {TimeValue(now)}, {3}));
    for (const SqlRow& r : rows) {
      PendingConsent c = ConsentFromRow(r);
      // Claimed only if nobody else moved next_poll meanwhile.
      ASSIGN_OR_RETURN(int64_t changed,
                       s.Execute("UPDATE pending_consents SET next_poll = ? WHERE consent_key = ? AND next_poll = ?",
                                 {TimeValue(now + hold), SqlValue::Text(c.key), TimeValue(c.next_poll)}));
      if (changed == 1) {
        c.next_poll = now + hold;
        claimed.push_back(std::move(c));
      }
    }
    return absl::OkStatus();
  }));
  return claimed;
}

absl::StatusOr<bool> SqlCredentialStore::ReplacePendingConsent(const PendingConsent& consent,
                                                               const std::string& expected_sealed) {
  int64_t changed = 0;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    if (consent.sealed.empty()) {
      ASSIGN_OR_RETURN(changed, s.Execute("DELETE FROM pending_consents WHERE consent_key = ? AND sealed = ?",
                                          {SqlValue::Text(consent.key), SqlValue::Bytes(expected_sealed)}));
      return absl::OkStatus();
    }
    std::vector<SqlValue> values = ConsentValues(consent);
    values.erase(values.begin());
    values.push_back(SqlValue::Text(consent.key));
    values.push_back(SqlValue::Bytes(expected_sealed));
    ASSIGN_OR_RETURN(changed, s.Execute("UPDATE pending_consents SET grant_id = ?, caller = ?, sealed = ?, "
                                        "expire_time = ?, next_poll = ? WHERE consent_key = ? AND sealed = ?",
                                        values));
    return absl::OkStatus();
  }));
  return changed > 0;
}

absl::Status SqlCredentialStore::Heartbeat(absl::string_view id, absl::Time start_time) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    const SqlValue key = SqlValue::Text(std::string(id));
    ASSIGN_OR_RETURN(int64_t changed,
                     s.Execute(absl::StrCat("UPDATE replicas SET last_seen = ", backend_->NowMicrosSql(),
                                            " WHERE id = ?"),
                               {key}));
    if (changed > 0) return absl::OkStatus();
    return s
        .Execute(absl::StrCat("INSERT INTO replicas (id, start_time, last_seen) VALUES (?, ?, ",
                              backend_->NowMicrosSql(), ")"),
                 {key, TimeValue(start_time)})
        .status();
  });
}

absl::StatusOr<std::vector<ReplicaRecord>> SqlCredentialStore::LiveReplicas(absl::Duration within) {
  std::vector<ReplicaRecord> live;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    const SqlValue window = SqlValue::Int(absl::ToInt64Microseconds(within));
    RETURN_IF_ERROR(
        s.Execute(absl::StrCat("DELETE FROM replicas WHERE last_seen < ", backend_->NowMicrosSql(), " - ?"), {window})
            .status());
    ASSIGN_OR_RETURN(auto rows, s.Query("SELECT id, start_time, last_seen FROM replicas ORDER BY id", {}));
    for (const SqlRow& r : rows) live.push_back({r[0].AsString(), TimeOf(r[1]), TimeOf(r[2])});
    return absl::OkStatus();
  }));
  return live;
}

absl::Status SqlCredentialStore::RemoveReplica(absl::string_view id) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    return s.Execute("DELETE FROM replicas WHERE id = ?", {SqlValue::Text(std::string(id))}).status();
  });
}

absl::Status SqlCredentialStore::PublishChange(absl::string_view change) {
  if (backend_->NotifySql().empty()) return absl::OkStatus();
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    return s.Query(backend_->NotifySql(), {SqlValue::Text(std::string(change))}).status();
  });
}

absl::Status SqlCredentialStore::DeleteGrant(absl::string_view id) {
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(int64_t changed, s.Execute("DELETE FROM grants WHERE id = ?", {SqlValue::Text(std::string(id))}));
    return changed == 0 ? RecordNotFound("grant", id) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<SealedField>> SqlCredentialStore::ListSealedFields() {
  std::vector<SealedField> fields;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto creds, s.Query("SELECT app_id, id, sealed_secret FROM app_credentials ORDER BY app_id, id",
                                         {}, {2}));
    for (const SqlRow& r : creds) {
      fields.push_back({SealedField::Kind::kCredentialSecret, r[0].AsString(), r[1].AsString(), "", r[2].AsString()});
    }
    ASSIGN_OR_RETURN(auto grants, s.Query("SELECT id, sealed_refresh_token FROM grants WHERE sealed_refresh_token IS "
                                          "NOT NULL ORDER BY id",
                                          {}, {1}));
    for (const SqlRow& r : grants) {
      fields.push_back({SealedField::Kind::kRefreshToken, "", "", r[0].AsString(), r[1].AsString()});
    }
    return absl::OkStatus();
  }));
  return fields;
}

absl::StatusOr<bool> SqlCredentialStore::ReplaceSealedField(const SealedField& field, const std::string& resealed) {
  int64_t changed = 0;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    if (field.kind == SealedField::Kind::kCredentialSecret) {
      ASSIGN_OR_RETURN(changed, s.Execute("UPDATE app_credentials SET sealed_secret = ? WHERE app_id = ? AND id = ? "
                                          "AND sealed_secret = ?",
                                          {SqlValue::Bytes(resealed), SqlValue::Text(field.app),
                                           SqlValue::Text(field.credential), SqlValue::Bytes(field.sealed)}));
      if (changed > 0) {
        // An app changed underneath anyone holding it: bump its version.
        RETURN_IF_ERROR(
            s.Execute("UPDATE apps SET version = version + 1 WHERE id = ?", {SqlValue::Text(field.app)}).status());
      }
    } else {
      ASSIGN_OR_RETURN(changed, s.Execute("UPDATE grants SET sealed_refresh_token = ?, version = version + 1 "
                                          "WHERE id = ? AND sealed_refresh_token = ?",
                                          {SqlValue::Bytes(resealed), SqlValue::Text(field.grant),
                                           SqlValue::Bytes(field.sealed)}));
    }
    return absl::OkStatus();
  }));
  return changed > 0;
}

absl::StatusOr<int64_t> SqlCredentialStore::AppendAuditEvent(const AuditEvent& e) {
  int64_t id = 0;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(auto rows,
                     s.Query("INSERT INTO audit_events (time, caller, action, method, app_id, grant_id, result, "
                             "detail, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                             {SqlValue::Int(absl::ToUnixMicros(e.time)), SqlValue::Text(e.caller),
                              SqlValue::Text(e.action), SqlValue::Text(e.method), SqlValue::Text(e.app),
                              SqlValue::Text(e.grant), SqlValue::Text(e.result), SqlValue::Text(e.detail),
                              SqlValue::Text(e.request_id)}));
    if (rows.empty()) return absl::InternalError("audit insert returned no id");
    id = rows[0][0].AsInt();
    return absl::OkStatus();
  }));
  return id;
}

absl::Status SqlCredentialStore::AppendAuditEvents(const std::vector<AuditEvent>& events) {
  if (events.empty()) return absl::OkStatus();
  // Many rows per statement: one prepare and one round trip for each 100.
  constexpr size_t kRowsPerInsert = 100;
  return backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    for (size_t first = 0; first < events.size(); first += kRowsPerInsert) {
      const size_t last = std::min(events.size(), first + kRowsPerInsert);
      std::string sql =
          "INSERT INTO audit_events (time, caller, action, method, app_id, grant_id, result, detail, request_id) "
          "VALUES ";
      std::vector<SqlValue> params;
      params.reserve((last - first) * 9);
      for (size_t i = first; i < last; ++i) {
        const AuditEvent& e = events[i];
        sql += i == first ? "(?, ?, ?, ?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?, ?, ?, ?)";
        for (SqlValue v : {SqlValue::Int(absl::ToUnixMicros(e.time)), SqlValue::Text(e.caller),
                           SqlValue::Text(e.action), SqlValue::Text(e.method), SqlValue::Text(e.app),
                           SqlValue::Text(e.grant), SqlValue::Text(e.result), SqlValue::Text(e.detail),
                           SqlValue::Text(e.request_id)}) {
          params.push_back(std::move(v));
        }
      }
      RETURN_IF_ERROR(s.Execute(sql, params).status());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<AuditEvent>> SqlCredentialStore::ListAuditEvents(const AuditFilter& f) {
  std::vector<AuditEvent> events;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    std::string sql =
        "SELECT id, time, caller, action, method, app_id, grant_id, result, detail, request_id FROM audit_events "
        "WHERE 1 = 1";
    std::vector<SqlValue> params;
    auto add = [&](const std::string& column, const std::string& value) {
      if (value.empty()) return;
      absl::StrAppend(&sql, " AND ", column, " = ?");
      params.push_back(SqlValue::Text(value));
    };
    add("caller", f.caller);
    add("action", f.action);
    add("grant_id", f.grant);
    add("result", f.result);
    if (f.since != absl::InfinitePast()) {
      sql += " AND time >= ?";
      params.push_back(SqlValue::Int(absl::ToUnixMicros(f.since)));
    }
    if (f.until != absl::InfiniteFuture()) {
      sql += " AND time < ?";
      params.push_back(SqlValue::Int(absl::ToUnixMicros(f.until)));
    }
    if (f.before_id > 0) {
      sql += " AND id < ?";
      params.push_back(SqlValue::Int(f.before_id));
    }
    absl::StrAppend(&sql, " ORDER BY id DESC LIMIT ", f.limit > 0 ? f.limit : 100);
    ASSIGN_OR_RETURN(auto rows, s.Query(sql, params));
    for (const SqlRow& r : rows) {
      events.push_back({r[0].AsInt(), absl::FromUnixMicros(r[1].AsInt()), r[2].AsString(), r[3].AsString(),
                        r[4].AsString(), r[5].AsString(), r[6].AsString(), r[7].AsString(), r[8].AsString(),
                        r[9].AsString()});
    }
    return absl::OkStatus();
  }));
  return events;
}

absl::StatusOr<int64_t> SqlCredentialStore::PruneAuditEvents(absl::Time before) {
  int64_t changed = 0;
  RETURN_IF_ERROR(backend_->InTransaction([&](SqlSession& s) -> absl::Status {
    ASSIGN_OR_RETURN(changed,
                     s.Execute("DELETE FROM audit_events WHERE time < ?", {SqlValue::Int(absl::ToUnixMicros(before))}));
    return absl::OkStatus();
  }));
  return changed;
}

std::string SealedField::Aad() const {
  return kind == Kind::kCredentialSecret ? CredentialSecretAad(app, credential) : RefreshTokenAad(grant);
}

}  // namespace tokenbroker
