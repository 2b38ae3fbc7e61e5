// The PostgreSQL schema, as forward-only migrations; the same tables and
// columns as sqlite_schema.h with PostgreSQL's types. Never edit a released
// step: add a new one.
#ifndef TOKENBROKER_SERVICE_STORE_POSTGRES_SCHEMA_H_
#define TOKENBROKER_SERVICE_STORE_POSTGRES_SCHEMA_H_

#include <vector>

#include "service/store/postgres_backend.h"

namespace tokenbroker {

inline const std::vector<PostgresMigration>& PostgresMigrations() {
  static const std::vector<PostgresMigration>* migrations = new std::vector<PostgresMigration>{
      {2,
       "CREATE TABLE apps ("
       "  id TEXT PRIMARY KEY NOT NULL, provider BIGINT NOT NULL, tenant TEXT NOT NULL, issuer TEXT NOT NULL,"
       "  authority_host TEXT NOT NULL, client_id TEXT NOT NULL, imap_host TEXT NOT NULL,"
       "  imap_port BIGINT NOT NULL, imap_security BIGINT NOT NULL, token_endpoint TEXT NOT NULL,"
       "  authorization_endpoint TEXT NOT NULL, device_authorization_endpoint TEXT NOT NULL,"
       "  assertion_algorithm BIGINT NOT NULL, source BIGINT NOT NULL, create_time BIGINT,"
       "  update_time BIGINT, version BIGINT NOT NULL);"
       "CREATE TABLE app_labels ("
       "  app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE, key TEXT NOT NULL, value TEXT NOT NULL,"
       "  PRIMARY KEY (app_id, key));"
       "CREATE TABLE app_credentials ("
       "  app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE, id TEXT NOT NULL,"
       "  position BIGINT NOT NULL, kind BIGINT NOT NULL, not_after BIGINT, thumbprint_sha1 TEXT NOT NULL,"
       "  thumbprint_sha256 TEXT NOT NULL, subject TEXT NOT NULL, service_account_email TEXT NOT NULL,"
       "  certificate_pem TEXT NOT NULL, sealed_secret BYTEA NOT NULL, failing BIGINT NOT NULL,"
       "  error_oauth TEXT NOT NULL, error_code BIGINT NOT NULL, error_message TEXT NOT NULL,"
       "  error_time BIGINT, create_time BIGINT, PRIMARY KEY (app_id, id));"
       "CREATE TABLE grants ("
       "  id TEXT PRIMARY KEY NOT NULL, app_id TEXT NOT NULL REFERENCES apps(id), mailbox TEXT NOT NULL,"
       "  kind BIGINT NOT NULL, subject TEXT NOT NULL, scopes TEXT NOT NULL, state BIGINT NOT NULL,"
       "  error_oauth TEXT NOT NULL, error_code BIGINT NOT NULL, error_message TEXT NOT NULL,"
       "  error_time BIGINT, source BIGINT NOT NULL, create_time BIGINT, consent_time BIGINT,"
       "  refresh_token_last_used_time BIGINT, last_refresh_time BIGINT, sealed_refresh_token BYTEA,"
       "  version BIGINT NOT NULL);"
       "CREATE INDEX grants_by_app ON grants(app_id);"
       "CREATE TABLE grant_labels ("
       "  grant_id TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE, key TEXT NOT NULL,"
       "  value TEXT NOT NULL, PRIMARY KEY (grant_id, key));"
       "CREATE TABLE audit_events ("
       "  id BIGSERIAL PRIMARY KEY, time BIGINT NOT NULL, caller TEXT NOT NULL,"
       "  action TEXT NOT NULL, method TEXT NOT NULL, app_id TEXT NOT NULL, grant_id TEXT NOT NULL,"
       "  result TEXT NOT NULL, detail TEXT NOT NULL, request_id TEXT NOT NULL);"
       "CREATE INDEX audit_events_by_time ON audit_events(time)"},
      // How a client secret is sent (model.h ClientSecretAuth; 1 = form body).
      {3, "ALTER TABLE apps ADD COLUMN client_secret_auth BIGINT NOT NULL DEFAULT 1"},
      // Several replicas on one store: refresh leases, shared access tokens,
      // replica heartbeats and pending consents (docs/high-availability.md).
      {4,
       "CREATE TABLE refresh_leases ("
       "  grant_id TEXT PRIMARY KEY NOT NULL REFERENCES grants(id) ON DELETE CASCADE,"
       "  holder TEXT NOT NULL, fence BIGINT NOT NULL, expire_time BIGINT NOT NULL);"
       "CREATE TABLE access_tokens ("
       "  grant_id TEXT PRIMARY KEY NOT NULL REFERENCES grants(id) ON DELETE CASCADE,"
       "  sealed_token BYTEA NOT NULL, token_type TEXT NOT NULL, scopes TEXT NOT NULL,"
       "  expire_time BIGINT NOT NULL, holder TEXT NOT NULL, fence BIGINT NOT NULL, issue_time BIGINT);"
       "CREATE TABLE replicas ("
       "  id TEXT PRIMARY KEY NOT NULL, start_time BIGINT, last_seen BIGINT NOT NULL);"
       "CREATE TABLE pending_consents ("
       "  consent_key TEXT PRIMARY KEY NOT NULL, grant_id TEXT NOT NULL, caller TEXT NOT NULL,"
       "  sealed BYTEA NOT NULL, expire_time BIGINT, next_poll BIGINT)"},
  };
  return *migrations;
}

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_POSTGRES_SCHEMA_H_
