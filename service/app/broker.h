// Broker wires the modules together and runs tokenbrokerd's start-up and
// shutdown as named steps, each of which fails with a message naming it.
// Start() and Shutdown() are called from one thread.
#ifndef TOKENBROKER_SERVICE_APP_BROKER_H_
#define TOKENBROKER_SERVICE_APP_BROKER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "service/api/admin_service.h"
#include "service/api/call_guard.h"
#include "service/api/callback_threads_awake.h"
#include "service/api/mail_service.h"
#include "service/api/metrics_interceptor.h"
#include "service/api/token_service.h"
#include "service/app/vault_collector.h"
#include "service/audit/audit_trail.h"
#include "service/authz/authorizer.h"
#include "service/common/clock.h"
#include "service/common/files.h"
#include "service/common/periodic_task.h"
#include "service/config/config_loader.h"
#include "service/consent/consent_manager.h"
#include "service/crypto/keyring.h"
#include "service/crypto/sealer.h"
#include "service/http/curl_http_client.h"
#include "service/http/observed_http_client.h"
#include "service/idp/google_provider.h"
#include "service/idp/microsoft_provider.h"
#include "service/idp/oidc_provider.h"
#include "service/logging/logger.h"
#include "service/mail/mail_pool.h"
#include "service/metrics/metrics.h"
#include "service/metrics/process_collector.h"
#include "service/store/credential_store.h"
#include "service/store/postgres_change_listener.h"
#include "service/tokens/refresh_scheduler.h"
#include "service/tokens/replica_membership.h"
#include "service/tokens/token_manager.h"
#include "service/vault/vault.h"

namespace prometheus {
class Exposer;
}

namespace tokenbroker {

class Broker {
 public:
  // `config_path`: where `config` was read from; when set, the file is
  // watched and a valid change replaces the auth section (identities and
  // policy) while serving.
  Broker(Config config, Logger& logger, const Clock& clock, std::string config_path = "");
  ~Broker();

  // Runs every start-up step; the health service reports SERVING only when all
  // succeeded. On failure, what was started is shut down again.
  absl::Status Start();
  // Marks NOT_SERVING, stops accepting calls, lets in-flight calls finish for
  // up to the configured grace period (then cancels them), and closes
  // everything. Safe to call more than once.
  void Shutdown();

  // The addresses actually bound (port 0 in the config becomes a real port).
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // The health-only listener's address, empty when server.health_address is.
  const std::string& health_address() const { return health_address_; }

 private:
  absl::Status RunStep(absl::string_view name, const std::function<absl::Status()>& step);
  absl::Status StartHealthListener();
  // Sets the health status of both listeners.
  void SetServing(bool serving);
  absl::Status OpenKeyring();
  absl::Status ReloadKeyring();
  absl::Status OpenStore();
  // Several replicas on PostgreSQL: the heartbeat and the change feed from
  // the other replicas.
  absl::Status JoinReplicas();
  // Reconciles the apps and grants `declared` declares (and the files they
  // name) with the store; logs what changed (everything with `always_log`).
  absl::Status ReconcileDeclarations(const Config& declared, bool always_log);
  // Run every declarations_check_interval until Shutdown(): re-reads the
  // configuration file, reconciles its apps and grants (a record removed from
  // the file is deleted, a changed one replaced) and rebuilds the auth section
  // when it changed.
  void CheckDeclarations();
  // Rebuilds identities and policy from `fresh` (the configuration file as
  // just read) when the file (or a bearer token file it names) changed; a
  // file that is not valid keeps the running ones and logs why.
  void ReloadAuthIfChanged(const absl::StatusOr<Config>& fresh);
  absl::Status StartAudit();
  absl::Status StartMetrics();
  // The HTTP client and the identity providers over it.
  absl::Status BuildProviders();
  // The services and what they need (BuildServiceGraph), and their metrics.
  absl::Status BuildServices();
  // The gRPC server on its address, with the services.
  absl::Status StartGrpc();
  // Plaintext (loopback only, checked with the configuration) or TLS from
  // server.tls, reloaded when the files change.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials();

  Config config_;
  const std::string config_path_;
  // What the auth section was built from (the file and the token files).
  std::string auth_fingerprint_;
  // Held while a SQLite store is open: one broker per database file.
  std::optional<FileLock> sqlite_lock_;
  // The apps and grants last reconciled: the configuration's at start-up,
  // then the file's as the watcher last read it. Used by the start-up step and
  // then only by the watcher thread.
  Config declarations_;
  Logger& logger_;
  const Clock& clock_;
  absl::Time start_time_;
  std::unique_ptr<Sealer> sealer_;
  std::unique_ptr<CredentialStore> store_;
  // PostgreSQL only: this replica among the others, and what they change.
  std::unique_ptr<ReplicaMembership> membership_;
  std::unique_ptr<PostgresChangeListener> change_listener_;
  std::optional<Secret> postgres_dsn_;
  absl::Duration lease_ttl_ = absl::Seconds(30);
  std::unique_ptr<Vault> vault_;
  std::unique_ptr<Metrics> metrics_;
  std::shared_ptr<ProcessCollector> process_collector_;
  std::shared_ptr<VaultCollector> vault_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<AccessTokenExpiryCollector> token_expiry_collector_;
  std::unique_ptr<CurlHttpClient> http_;
  std::map<Provider, std::unique_ptr<ObservedHttpClient>> provider_http_;
  std::unique_ptr<MicrosoftProvider> microsoft_;
  std::unique_ptr<GoogleProvider> google_;
  std::unique_ptr<OidcProvider> oidc_;
  std::unique_ptr<TokenManager> tokens_;
  std::unique_ptr<RefreshScheduler> scheduler_;
  std::unique_ptr<ConsentManager> consent_;
  std::unique_ptr<MailPool> mail_pool_;
  std::unique_ptr<MailboxWatches> mailbox_watches_;
  std::unique_ptr<GrantWatch> grant_watch_;
  std::unique_ptr<GrantDiagnosis> diagnosis_;
  std::shared_ptr<MailConnectionsCollector> mail_collector_;
  std::unique_ptr<AuditTrail> audit_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<CallGuard> guard_;
  std::unique_ptr<TokenServiceImpl> token_service_;
  std::unique_ptr<MailServiceImpl> mail_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  // So that some thread always reads the network (see CallbackThreadsAwake).
  CallbackThreadsAwake callback_threads_awake_;
  std::string grpc_address_;
  // server.health_address: plaintext, grpc.health.v1.Health only, its status
  // always the same as server_'s (SetServing). Stopped after server_ has
  // drained, so probes see NOT_SERVING during the drain.
  std::unique_ptr<grpc::Server> health_server_;
  std::string health_address_;
  std::string metrics_address_;
  bool shut_down_ = false;
  std::unique_ptr<PeriodicTask> declarations_watcher_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_APP_BROKER_H_
