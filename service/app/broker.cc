#include "service/app/broker.h"

#include "service/app/service_graph.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <exception>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "prometheus/exposer.h"
#include "service/app/declarations.h"
#include "service/app/vault_collector.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"
#include "service/common/time_util.h"
#include "service/crypto/certificate.h"
#include "service/crypto/random.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "tokenbroker/version.h"

namespace tokenbroker {
namespace {

// Every method tokenbrokerd serves, as "package.Service/Method": the metric
// label set, fixed at start-up.
std::vector<std::string> ServedMethods() {
  std::vector<std::string> methods;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name :
       {"tokenbroker.v1.TokenService", "tokenbroker.v1.MailService", "tokenbroker.v1.AdminService"}) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back(absl::StrCat(service->full_name(), "/", service->method(i)->name()));
    }
  }
  methods.push_back("grpc.health.v1.Health/Check");
  methods.push_back("grpc.health.v1.Health/Watch");
  methods.push_back("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  return methods;
}

// "host:port" with the port replaced.
std::string WithPort(const std::string& address, int port) {
  if (absl::StartsWith(address, "unix:")) return address;
  return absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
}

}  // namespace

Broker::Broker(Config config, Logger& logger, const Clock& clock, std::string config_path)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      logger_(logger),
      clock_(clock),
      start_time_(clock.Now()) {}

Broker::~Broker() { Shutdown(); }

absl::Status Broker::RunStep(absl::string_view name, const std::function<absl::Status()>& step) {
  const absl::Time began = clock_.Now();
  absl::Status status = step();
  if (!status.ok()) {
    logger_.Error("start-up step failed", {{"step", name}, {"error", status}});
    return absl::Status(status.code(), absl::StrCat("start-up step ", name, " failed: ", status.message()));
  }
  logger_.Info("start-up step done", {{"step", name}, {"elapsed_seconds", clock_.Now() - began}});
  return absl::OkStatus();
}

absl::Status Broker::Start() {
  logger_.Info("starting tokenbrokerd", {{"version", kVersion}, {"revision", kRevision}});
  absl::Status status = RunStep("open-keyring", [this] { return OpenKeyring(); });
  if (status.ok()) status = RunStep("open-store", [this] { return OpenStore(); });
  if (status.ok()) {
    declarations_ = config_;
    status = RunStep("reconcile-declarations", [this] { return ReconcileDeclarations(declarations_, true); });
  }
  if (status.ok()) status = RunStep("start-metrics", [this] { return StartMetrics(); });
  if (status.ok()) status = RunStep("start-audit", [this] { return StartAudit(); });
  if (status.ok()) status = RunStep("build-providers", [this] { return BuildProviders(); });
  if (status.ok()) status = RunStep("build-services", [this] { return BuildServices(); });
  if (status.ok()) status = RunStep("start-grpc", [this] { return StartGrpc(); });
  if (status.ok() && membership_ != nullptr) status = RunStep("join-replicas", [this] { return JoinReplicas(); });
  if (status.ok() && !config_.server().health_address().empty()) {
    status = RunStep("start-health-listener", [this] { return StartHealthListener(); });
  }
  if (!status.ok()) {
    Shutdown();
    return status;
  }
  SetServing(true);
  if (config_.apps_size() + config_.grants_size() > 0 || !config_path_.empty()) {
    const absl::Duration interval = config_.has_declarations_check_interval()
                                        ? FromProtoDuration(config_.declarations_check_interval())
                                        : absl::Seconds(30);
    declarations_watcher_ = std::make_unique<PeriodicTask>(interval, [this] { CheckDeclarations(); });
    declarations_watcher_->Start();
  }
  scheduler_->Start();
  consent_->Start();
  mail_pool_->Start();
  grant_watch_->Start();
  logger_.Info("serving", {{"grpc_address", grpc_address_},
                           {"metrics_address", metrics_address_.empty() ? "disabled" : metrics_address_},
                           {"health_address", health_address_.empty() ? "disabled" : health_address_}});
  return absl::OkStatus();
}

absl::Status Broker::OpenKeyring() {
  bool created = false;
  absl::StatusOr<Keyring> ring =
      Keyring::LoadOrCreate(config_.keys().keyring_file(), config_.keys().create_if_missing(), clock_.Now(), &created);
  if (!ring.ok()) return ring.status();
  if (created) {
    logger_.Warn("created a new keyring; back it up, without it the stored secrets cannot be opened",
                 {{"keyring_file", config_.keys().keyring_file()}, {"active_key_id", ring->active_key_id()}});
  }
  sealer_ = std::make_unique<Sealer>(std::make_shared<const Keyring>(std::move(*ring)));
  return absl::OkStatus();
}

absl::Status Broker::ReloadKeyring() {
  absl::StatusOr<Keyring> ring = Keyring::LoadFile(config_.keys().keyring_file());
  if (!ring.ok()) {
    return absl::Status(ring.status().code(), absl::StrCat("reloading the keyring: ", ring.status().message()));
  }
  logger_.Info("keyring reloaded", {{"active_key_id", ring->active_key_id()}});
  sealer_->ReplaceKeyring(std::make_shared<const Keyring>(std::move(*ring)));
  return absl::OkStatus();
}

absl::Status Broker::OpenStore() {
  std::unique_ptr<SqlBackend> backend;
  std::string replica_id;
  absl::Duration heartbeat_interval;
  if (config_.store().has_postgres()) {
    const auto& pg = config_.store().postgres();
    absl::StatusOr<Secret> dsn = ReadSecretFile(pg.dsn_file());
    if (!dsn.ok())
      return absl::Status(dsn.status().code(), absl::StrCat("store.postgres.dsn_file: ", dsn.status().message()));
    ASSIGN_OR_RETURN(backend, PostgresBackend::Open(*dsn, static_cast<int>(pg.pool_size()), PostgresMigrations()));
    if (pg.has_lease_ttl()) lease_ttl_ = FromProtoDuration(pg.lease_ttl());
    const absl::Duration heartbeat =
        pg.has_heartbeat_interval() ? FromProtoDuration(pg.heartbeat_interval()) : absl::Seconds(5);
    if (lease_ttl_ <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("store.postgres.lease_ttl: must be positive (for example 30s)");
    }
    if (heartbeat <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("store.postgres.heartbeat_interval: must be positive (for example 5s)");
    }
    if (!pg.replica_id().empty()) {
      RETURN_IF_ERROR(ValidateId("store.postgres.replica_id", pg.replica_id()));
    }
    postgres_dsn_ = *std::move(dsn);
    replica_id = ReplicaMembership::MakeId(pg.replica_id());
    heartbeat_interval = heartbeat;
  } else {
    // SQLite is single-process: a second broker on the same file would
    // refresh every grant a second time and split the token caches.
    const std::string& path = config_.store().sqlite().path();
    RETURN_IF_ERROR(MakeDirectories(DirName(path)));
    absl::StatusOr<FileLock> lock = FileLock::Acquire(path + ".lock");
    if (!lock.ok()) {
      return absl::Status(lock.status().code(),
                          absl::StrCat("store.sqlite.path: ", lock.status().message(),
                                       ": another tokenbrokerd uses this database; SQLite allows one broker per "
                                       "file (use PostgreSQL for several replicas)"));
    }
    sqlite_lock_ = *std::move(lock);
    ASSIGN_OR_RETURN(auto db, SqliteDatabase::Open(path, SqliteMigrations()));
    backend = std::make_unique<SqliteBackend>(std::move(db));
  }
  store_ = std::make_unique<SqlCredentialStore>(std::move(backend));
  vault_ = std::make_unique<Vault>(*store_, *sealer_, clock_);
  // A replica meeting a value sealed under a key it has not loaded yet
  // (another replica rotated keys) re-reads the keyring first.
  vault_->SetKeyringReloader([this] { return ReloadKeyring(); });
  if (!replica_id.empty()) {
    membership_ = std::make_unique<ReplicaMembership>(*store_, clock_, logger_, replica_id, heartbeat_interval,
                                                      [this, replica_id](size_t alive) {
                                                        if (metrics_ != nullptr) metrics_->SetReplicas(replica_id, alive);
                                                      });
  }
  return absl::OkStatus();
}

absl::Status Broker::JoinReplicas() {
  ASSIGN_OR_RETURN(change_listener_,
                   PostgresChangeListener::Start(
                       *postgres_dsn_,
                       [this](absl::string_view change) {
                         if (absl::ConsumePrefix(&change, "token:")) {
                           tokens_->SharedTokenStored(change);
                         } else {
                           vault_->ApplyRemoteChange(change);
                         }
                       },
                       [this](bool up, absl::string_view error) {
                         metrics_->SetChangeFeedConnected(up);
                         if (up) {
                           logger_.Info("change feed reconnected; every cached grant is re-read");
                         } else {
                           logger_.Warn("change feed lost; reconnecting", {{"error", error}});
                         }
                       }));
  metrics_->SetChangeFeedConnected(true);
  RETURN_IF_ERROR(membership_->Start());
  logger_.Info("joined the replicas", {{"replica", membership_->id()},
                                       {"replicas", absl::StrJoin(membership_->Live(), ",")},
                                       {"lease_ttl_seconds", lease_ttl_}});
  return absl::OkStatus();
}

absl::Status Broker::ReconcileDeclarations(const Config& declared, bool always_log) {
  absl::StatusOr<ReconcileReport> report = DeclarationReconciler(declared, *vault_).Reconcile();
  if (!report.ok()) {
    return absl::Status(report.status().code(), absl::StrCat("configuration ", report.status().message()));
  }
  for (const std::string& kept : report->kept) {
    logger_.Warn("a declared record was removed from the configuration but is still in use; kept", {{"record", kept}});
  }
  if (report->changed() || always_log) {
    logger_.Info("declarations reconciled", {{"created", report->created},
                                             {"updated", report->updated},
                                             {"unchanged", report->unchanged},
                                             {"deleted", report->deleted}});
  }
  return absl::OkStatus();
}

void Broker::CheckDeclarations() {
  // The file as it is now. One that no longer parses keeps the last good
  // declarations (whose secret files are still re-read); ReloadAuthIfChanged
  // logs why, once per change.
  absl::StatusOr<Config> fresh = config_path_.empty() ? absl::StatusOr<Config>(config_) : LoadConfigFile(config_path_);
  const bool declared_before = declarations_.apps_size() + declarations_.grants_size() > 0;
  if (fresh.ok()) declarations_ = *fresh;
  // Records declared before and removed from the file now are deleted.
  if (declared_before || declarations_.apps_size() + declarations_.grants_size() > 0) {
    absl::Status status = ReconcileDeclarations(declarations_, false);
    if (!status.ok()) {
      logger_.Error("declared apps or grants could not be reconciled; the stored ones stay in use",
                    {{"error", status}});
    }
  }
  ReloadAuthIfChanged(fresh);
}

namespace {

// The configuration file and every bearer token file it names, as read now.
std::string AuthFingerprint(const std::string& config_path, const config::v1::AuthConfig& auth) {
  std::vector<std::string> paths = {config_path};
  for (const auto& t : auth.bearer_tokens()) paths.push_back(t.token_file());
  std::string fingerprint;
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    absl::StrAppend(&fingerprint, path, "\n", text.ok() ? Sha256(*text) : "unreadable", "\n");
  }
  return Sha256(fingerprint);
}

}  // namespace

void Broker::ReloadAuthIfChanged(const absl::StatusOr<Config>& fresh) {
  if (config_path_.empty() || authorizer_ == nullptr) return;
  const std::string fingerprint = AuthFingerprint(config_path_, fresh.ok() ? fresh->auth() : config_.auth());
  if (fingerprint == auth_fingerprint_) return;
  auth_fingerprint_ = fingerprint;
  if (!fresh.ok()) {
    logger_.Error("the changed configuration file is not valid; the running policy stays in use",
                  {{"error", fresh.status()}});
    return;
  }
  absl::StatusOr<std::pair<std::unique_ptr<IdentityResolver>, Policy>> built = Authorizer::Build(fresh->auth(), clock_);
  if (!built.ok()) {
    logger_.Error("the changed auth section is not valid; the running policy stays in use",
                  {{"error", built.status()}});
    return;
  }
  const size_t rules = built->second.rule_count();
  authorizer_->Replace(std::move(built->first), std::move(built->second));
  logger_.Info("auth configuration reloaded", {{"rules", rules}});
}

absl::Status Broker::StartAudit() {
  AuditTrailOptions options;
  const auto& ac = config_.audit();
  if (ac.has_retention()) options.retention = FromProtoDuration(ac.retention());
  if (ac.max_pending() > 0) options.max_pending = ac.max_pending();
  options.coalesce_cache_hits = ac.cache_hits() != config::v1::AuditConfig::CACHE_HITS_EACH;
  switch (ac.log_events()) {
    case config::v1::AuditConfig::LOG_EVENTS_ALL:
      options.log_events = AuditTrailOptions::LogEvents::kAll;
      break;
    case config::v1::AuditConfig::LOG_EVENTS_NONE:
      options.log_events = AuditTrailOptions::LogEvents::kNone;
      break;
    default:
      options.log_events = AuditTrailOptions::LogEvents::kFailures;
      break;
  }
  options.on_dropped = [this] { metrics_->CountAuditDropped(); };
  options.on_write = [this](bool ok) {
    if (!ok) metrics_->CountAuditWriteFailure();
  };
  audit_ = std::make_unique<AuditTrail>(*store_, logger_, clock_, std::move(options));
  audit_->Start();
  ASSIGN_OR_RETURN(auto built, Authorizer::Build(config_.auth(), clock_));
  if (built.second.rule_count() == 0) {
    logger_.Warn("auth.rules is empty: every call will be refused (docs/security.md)");
  }
  auth_fingerprint_ = config_path_.empty() ? "" : AuthFingerprint(config_path_, config_.auth());
  authorizer_ = std::make_unique<Authorizer>(
      std::move(built.first), std::move(built.second),
      [this](absl::string_view grant) -> absl::StatusOr<std::map<std::string, std::string>> {
        ASSIGN_OR_RETURN(Grant g, store_->GetGrant(grant));
        return g.labels;
      },
      clock_);
  guard_ = std::make_unique<CallGuard>(
      *authorizer_, *audit_, config_.server().plaintext(),
      [this](Action action, absl::string_view reason) { metrics_->CountRefusedCall(ActionName(action), reason); });
  return absl::OkStatus();
}

absl::Status Broker::StartMetrics() {
  metrics_ = std::make_unique<Metrics>(BuildInfo{kVersion, kRevision}, ServedMethods());
  if (config_.server().metrics_address().empty()) return absl::OkStatus();
  process_collector_ = std::make_shared<ProcessCollector>();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(config_.server().metrics_address(), 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", config_.server().metrics_address(), ": ", e.what()));
  }
  exposer_->RegisterCollectable(metrics_->registry());
  exposer_->RegisterCollectable(process_collector_);
  vault_collector_ = std::make_shared<VaultCollector>(*store_, !config_.metrics().omit_per_grant());
  exposer_->RegisterCollectable(vault_collector_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  metrics_address_ = WithPort(config_.server().metrics_address(), ports.empty() ? 0 : ports.front());
  return absl::OkStatus();
}

absl::Status Broker::BuildProviders() {
  CurlOptions http;
  const auto& hc = config_.http();
  http.ca_file = hc.ca_file();
  if (hc.has_connect_timeout()) http.connect_timeout = FromProtoDuration(hc.connect_timeout());
  if (hc.has_timeout()) http.timeout = FromProtoDuration(hc.timeout());
  if (hc.max_response_bytes() > 0) http.max_response_bytes = hc.max_response_bytes();
  http_ = std::make_unique<CurlHttpClient>(http);
  // One observed client per provider: the request metrics carry its name.
  for (Provider provider : {Provider::kMicrosoft, Provider::kGoogle, Provider::kOidc}) {
    provider_http_[provider] = std::make_unique<ObservedHttpClient>(
        *http_, [this, provider](int status) { metrics_->CountIdpHttpRequest(ProviderName(provider), status); });
  }
  microsoft_ = std::make_unique<MicrosoftProvider>(*provider_http_[Provider::kMicrosoft], clock_);
  google_ = std::make_unique<GoogleProvider>(*provider_http_[Provider::kGoogle], clock_);
  oidc_ = std::make_unique<OidcProvider>(*provider_http_[Provider::kOidc], clock_);
  return absl::OkStatus();
}

absl::Status Broker::BuildServices() {
  ServiceGraphParts parts;
  parts.config = &config_;
  parts.vault = vault_.get();
  parts.store = store_.get();
  parts.sealer = sealer_.get();
  parts.providers = {
      {Provider::kMicrosoft, microsoft_.get()}, {Provider::kGoogle, google_.get()}, {Provider::kOidc, oidc_.get()}};
  parts.clock = &clock_;
  parts.logger = &logger_;
  parts.metrics = metrics_.get();
  parts.authorizer = authorizer_.get();
  parts.guard = guard_.get();
  parts.membership = membership_.get();
  parts.lease_ttl = lease_ttl_;
  parts.identity = ServerIdentity{kVersion, kRevision, start_time_, std::string(store_->kind())};
  parts.reload_keyring = [this] { return ReloadKeyring(); };
  ServiceGraph graph = BuildServiceGraph(parts);
  tokens_ = std::move(graph.tokens);
  consent_ = std::move(graph.consent);
  scheduler_ = std::move(graph.scheduler);
  mail_pool_ = std::move(graph.mail_pool);
  mailbox_watches_ = std::move(graph.mailbox_watches);
  grant_watch_ = std::move(graph.grant_watch);
  // /metrics counts grants by state from the watch's memory, not the store.
  if (vault_collector_ != nullptr) {
    vault_collector_->UseGrantCounts([watch = grant_watch_.get()] { return watch->GrantCounts(); });
  }
  diagnosis_ = std::move(graph.diagnosis);
  token_service_ = std::move(graph.token_service);
  mail_service_ = std::move(graph.mail_service);
  admin_service_ = std::move(graph.admin_service);
  if (exposer_ != nullptr && !config_.metrics().omit_per_grant()) {
    token_expiry_collector_ =
        std::make_shared<AccessTokenExpiryCollector>([this] { return tokens_->CachedExpiries(); });
    exposer_->RegisterCollectable(token_expiry_collector_);
  }
  if (exposer_ != nullptr) {
    mail_collector_ = std::make_shared<MailConnectionsCollector>([this] {
      MailPool::Counts c = mail_pool_->counts();
      return std::make_pair(c.idle, c.in_use);
    });
    exposer_->RegisterCollectable(mail_collector_);
  }
  return absl::OkStatus();
}

absl::Status Broker::StartGrpc() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this, Linux lets a second broker bind the same port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, ServerCredentials());
  builder.AddListeningPort(config_.server().grpc_address(), credentials, &port);
  const uint32_t max_request = config_.server().max_request_bytes();
  builder.SetMaxReceiveMessageSize(max_request > 0 ? static_cast<int>(max_request) : 4 << 20);
  builder.RegisterService(token_service_.get());
  builder.RegisterService(mail_service_.get());
  builder.RegisterService(admin_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  mail_service_->AddCompletionQueues(builder);
  server_ = builder.BuildAndStart();
  const bool is_unix = absl::StartsWith(config_.server().grpc_address(), "unix:");
  if (server_ == nullptr || (!is_unix && port == 0)) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", config_.server().grpc_address(),
                                               " (address in use, or not an address of this machine?)"));
  }
  mail_service_->StartThreads();
  callback_threads_awake_.Start();
  // The default health service starts out SERVING; hold that until Start()
  // has finished every step.
  server_->GetHealthCheckService()->SetServingStatus(false);
  grpc_address_ = WithPort(config_.server().grpc_address(), port);
  return absl::OkStatus();
}

absl::Status Broker::StartHealthListener() {
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Health checks are tiny; anything larger is not a health check.
  builder.SetMaxReceiveMessageSize(4096);
  int port = 0;
  builder.AddListeningPort(config_.server().health_address(), grpc::InsecureServerCredentials(), &port);
  health_server_ = builder.BuildAndStart();
  if (health_server_ == nullptr || port == 0) {
    health_server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen for health checks on ",
                                               config_.server().health_address(),
                                               " (address in use, or not an address of this machine?)"));
  }
  health_server_->GetHealthCheckService()->SetServingStatus(false);
  health_address_ = WithPort(config_.server().health_address(), port);
  return absl::OkStatus();
}

void Broker::SetServing(bool serving) {
  if (server_ != nullptr) server_->GetHealthCheckService()->SetServingStatus(serving);
  if (health_server_ != nullptr) health_server_->GetHealthCheckService()->SetServingStatus(serving);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Broker::ServerCredentials() {
  if (!config_.server().has_tls()) return grpc::InsecureServerCredentials();
  const auto& tls = config_.server().tls();
  // Checked now, so that a wrong file stops the start with a clear message
  // instead of failing every handshake later.
  ASSIGN_OR_RETURN(std::string certificate, ReadFileToString(tls.certificate_file()));
  ASSIGN_OR_RETURN(Secret key, ReadSecretFile(tls.private_key_file()));
  if (absl::Status s = ParseCertificatePem(certificate).status(); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("server.tls.certificate_file: ", s.message()));
  }
  if (absl::Status s = CheckPrivateKeyMatchesCertificate(certificate, key); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("server.tls.private_key_file: ", s.message()));
  }
  if (!tls.client_ca_file().empty()) {
    ASSIGN_OR_RETURN(std::string ca, ReadFileToString(tls.client_ca_file()));
    if (absl::Status s = ParseCertificatePem(ca).status(); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("server.tls.client_ca_file: ", s.message()));
    }
  }
  const absl::Duration reload =
      tls.has_reload_interval() ? FromProtoDuration(tls.reload_interval()) : absl::Seconds(60);
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.private_key_file(), tls.certificate_file(), tls.client_ca_file(),
      static_cast<unsigned int>(std::max<int64_t>(1, absl::ToInt64Seconds(reload))));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.client_ca_file().empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(tls.require_client_certificate()
                                      ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

void Broker::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (declarations_watcher_ != nullptr) declarations_watcher_->Stop();
  if (scheduler_ != nullptr) scheduler_->Stop();
  if (consent_ != nullptr) consent_->Stop();
  if (server_ != nullptr) {
    const absl::Duration grace = ShutdownGracePeriod(config_);
    logger_.Info("shutdown step", {{"step", "drain-grpc"}, {"grace_period_seconds", grace}});
    SetServing(false);
    // Watch streams never end by themselves: end them now (UNAVAILABLE,
    // watch again) instead of holding the drain for the whole grace period.
    admin_service_->EndWatches();
    mailbox_watches_->Shutdown();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
    mail_service_->StopThreads();
    callback_threads_awake_.Stop();
    server_.reset();
  }
  if (grant_watch_ != nullptr) grant_watch_->Stop();
  if (health_server_ != nullptr) {
    health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_server_->Wait();
    health_server_.reset();
  }
  if (mail_pool_ != nullptr) {
    logger_.Info("shutdown step", {{"step", "logout-imap"}});
    mail_pool_->Shutdown();
  }
  if (audit_ != nullptr) {
    logger_.Info("shutdown step", {{"step", "flush-audit"}});
    audit_->Stop();
  }
  if (exposer_ != nullptr) {
    logger_.Info("shutdown step", {{"step", "stop-metrics"}});
    exposer_.reset();
  }
  if (membership_ != nullptr) {
    // The others take this replica's grants over at once.
    logger_.Info("shutdown step", {{"step", "leave-replicas"}});
    membership_->Stop();
  }
  change_listener_.reset();
  if (store_ != nullptr) {
    logger_.Info("shutdown step", {{"step", "close-store"}});
    vault_.reset();
    store_.reset();
  }
  sqlite_lock_.reset();
  sealer_.reset();
  logger_.Info("stopped");
}

}  // namespace tokenbroker
