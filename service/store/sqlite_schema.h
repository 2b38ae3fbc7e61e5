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
      {2,
       "CREATE TABLE apps ("
       "  id TEXT PRIMARY KEY NOT NULL, provider INTEGER NOT NULL, tenant TEXT NOT NULL, issuer TEXT NOT NULL,"
       "  authority_host TEXT NOT NULL, client_id TEXT NOT NULL, imap_host TEXT NOT NULL,"
       "  imap_port INTEGER NOT NULL, imap_security INTEGER NOT NULL, token_endpoint TEXT NOT NULL,"
       "  authorization_endpoint TEXT NOT NULL, device_authorization_endpoint TEXT NOT NULL,"
       "  assertion_algorithm INTEGER NOT NULL, source INTEGER NOT NULL, create_time INTEGER,"
       "  update_time INTEGER, version INTEGER NOT NULL);"
       "CREATE TABLE app_labels ("
       "  app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE, key TEXT NOT NULL, value TEXT NOT NULL,"
       "  PRIMARY KEY (app_id, key));"
       "CREATE TABLE app_credentials ("
       "  app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE, id TEXT NOT NULL,"
       "  position INTEGER NOT NULL, kind INTEGER NOT NULL, not_after INTEGER, thumbprint_sha1 TEXT NOT NULL,"
       "  thumbprint_sha256 TEXT NOT NULL, subject TEXT NOT NULL, service_account_email TEXT NOT NULL,"
       "  certificate_pem TEXT NOT NULL, sealed_secret BLOB NOT NULL, failing INTEGER NOT NULL,"
       "  error_oauth TEXT NOT NULL, error_code INTEGER NOT NULL, error_message TEXT NOT NULL,"
       "  error_time INTEGER, create_time INTEGER, PRIMARY KEY (app_id, id));"
       "CREATE TABLE grants ("
       "  id TEXT PRIMARY KEY NOT NULL, app_id TEXT NOT NULL REFERENCES apps(id), mailbox TEXT NOT NULL,"
       "  kind INTEGER NOT NULL, subject TEXT NOT NULL, scopes TEXT NOT NULL, state INTEGER NOT NULL,"
       "  error_oauth TEXT NOT NULL, error_code INTEGER NOT NULL, error_message TEXT NOT NULL,"
       "  error_time INTEGER, source INTEGER NOT NULL, create_time INTEGER, consent_time INTEGER,"
       "  refresh_token_last_used_time INTEGER, last_refresh_time INTEGER, sealed_refresh_token BLOB,"
       "  version INTEGER NOT NULL);"
       "CREATE INDEX grants_by_app ON grants(app_id);"
       "CREATE TABLE grant_labels ("
       "  grant_id TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE, key TEXT NOT NULL,"
       "  value TEXT NOT NULL, PRIMARY KEY (grant_id, key));"
       "CREATE TABLE audit_events ("
       "  id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, caller TEXT NOT NULL,"
       "  action TEXT NOT NULL, method TEXT NOT NULL, app_id TEXT NOT NULL, grant_id TEXT NOT NULL,"
       "  result TEXT NOT NULL, detail TEXT NOT NULL, request_id TEXT NOT NULL);"
       "CREATE INDEX audit_events_by_time ON audit_events(time)"},
      // How a client secret is sent (model.h ClientSecretAuth; 1 = form body).
      {3, "ALTER TABLE apps ADD COLUMN client_secret_auth INTEGER NOT NULL DEFAULT 1"},
      // Several replicas on one store: refresh leases, shared access tokens,
      // replica heartbeats and pending consents (docs/high-availability.md).
      {4,
       "CREATE TABLE refresh_leases ("
       "  grant_id TEXT PRIMARY KEY NOT NULL REFERENCES grants(id) ON DELETE CASCADE,"
       "  holder TEXT NOT NULL, fence INTEGER NOT NULL, expire_time INTEGER NOT NULL);"
       "CREATE TABLE access_tokens ("
       "  grant_id TEXT PRIMARY KEY NOT NULL REFERENCES grants(id) ON DELETE CASCADE,"
       "  sealed_token BLOB NOT NULL, token_type TEXT NOT NULL, scopes TEXT NOT NULL,"
       "  expire_time INTEGER NOT NULL, holder TEXT NOT NULL, fence INTEGER NOT NULL, issue_time INTEGER);"
       "CREATE TABLE replicas ("
       "  id TEXT PRIMARY KEY NOT NULL, start_time INTEGER, last_seen INTEGER NOT NULL);"
       "CREATE TABLE pending_consents ("
       "  consent_key TEXT PRIMARY KEY NOT NULL, grant_id TEXT NOT NULL, caller TEXT NOT NULL,"
       "  sealed BLOB NOT NULL, expire_time INTEGER, next_poll INTEGER)"},
  };
  return *migrations;
}

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_SQLITE_SCHEMA_H_
