// An in-process gRPC server with the broker's services and metrics
// interceptor on a free loopback port, for handler and client tests. The
// services are built by BuildServiceGraph, the daemon's own composition root,
// over an in-memory store and the Microsoft-shaped fake; nothing background
// (scheduler, consent poller, mail sweeper) is started.
#ifndef TOKENBROKER_TESTS_SUPPORT_IN_PROCESS_SERVER_H_
#define TOKENBROKER_TESTS_SUPPORT_IN_PROCESS_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/api/call_guard.h"
#include "service/api/metrics_interceptor.h"
#include "service/app/service_graph.h"
#include "service/audit/audit_trail.h"
#include "service/authz/authorizer.h"
#include "service/idp/microsoft_provider.h"
#include "service/metrics/metrics.h"
#include "service/store/in_memory_credential_store.h"
#include "service/tokens/token_manager.h"
#include "service/vault/vault.h"
#include "tests/support/fake_microsoft.h"

namespace tokenbroker::testing {

class InProcessServer {
 public:
  // The policy when none is given: the local (plaintext) caller "test" may
  // do everything.
  static config::v1::AuthConfig AllowAll() {
    config::v1::AuthConfig auth;
    auth.set_local_caller("test");
    auto* rule = auth.add_rules();
    rule->add_callers("test");
    rule->add_actions("*");
    rule->add_grants("*");
    return auth;
  }

  // The identities and policy of `auth`; aborts when `auth` is not valid (a
  // test's mistake).
  static std::pair<std::unique_ptr<IdentityResolver>, Policy> BuildAuth(const config::v1::AuthConfig& auth) {
    auto built = Authorizer::Build(auth, SystemClock::Get());
    if (!built.ok()) {
      std::fprintf(stderr, "InProcessServer: the test's auth configuration is not valid: %s\n",
                   std::string(built.status().message()).c_str());
      std::abort();
    }
    return *std::move(built);
  }

  // `refresh_threads` and `max_pending`: TokenServiceImpl's refresh workers.
  // `one_message_threads`: mail.get_message_threads and
  // mail.fetch_message_threads (unset: the defaults).
  explicit InProcessServer(int refresh_threads = 8, size_t max_pending = 10000,
                           const config::v1::AuthConfig& auth = AllowAll(),
                           std::optional<uint32_t> one_message_threads = std::nullopt)
      : metrics_(BuildInfo{"9.9.9", "test"},
                 {"tokenbroker.v1.AdminService/GetServerInfo", "tokenbroker.v1.TokenService/GetAccessToken",
                  "tokenbroker.v1.MailService/GetMessage", "tokenbroker.v1.MailService/FetchMessage",
                  "grpc.health.v1.Health/Check"}),
        sealer_(std::make_shared<const Keyring>(
            *Keyring::Parse("active: k1\nkeys:\n  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "test"))),
        vault_(store_, sealer_, SystemClock::Get()),
        idp_(SystemClock::Get()),
        microsoft_(idp_, SystemClock::Get()),
        audit_(store_, logger_, SystemClock::Get()),
        built_auth_(BuildAuth(auth)),
        authorizer_(
            std::move(built_auth_.first), std::move(built_auth_.second),
            [this](absl::string_view grant) -> absl::StatusOr<std::map<std::string, std::string>> {
              absl::StatusOr<Grant> g = store_.GetGrant(grant);
              if (!g.ok()) return g.status();
              return g->labels;
            },
            SystemClock::Get()),
        guard_(authorizer_, audit_, /*plaintext_listener=*/true, [this](Action action, absl::string_view reason) {
          metrics_.CountRefusedCall(ActionName(action), reason);
        }) {
    config_.mutable_tokens()->set_max_concurrent_refreshes(static_cast<uint32_t>(refresh_threads));
    ServiceGraphParts parts;
    parts.config = &config_;
    parts.vault = &vault_;
    parts.store = &store_;
    parts.sealer = &sealer_;
    parts.providers = {{Provider::kMicrosoft, &microsoft_}};
    parts.clock = &SystemClock::Get();
    parts.logger = &logger_;
    parts.metrics = &metrics_;
    parts.authorizer = &authorizer_;
    parts.guard = &guard_;
    parts.identity = ServerIdentity{"9.9.9", "test", absl::FromUnixSeconds(1'800'000'000), "sqlite"};
    parts.max_pending_calls = max_pending;
    if (one_message_threads.has_value()) {
      config_.mutable_mail()->set_get_message_threads(*one_message_threads);
      config_.mutable_mail()->set_fetch_message_threads(*one_message_threads);
    }
    graph_ = BuildServiceGraph(parts);
    graph_.grant_watch->Start();
    audit_.Start();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(graph_.token_service.get());
    builder.RegisterService(graph_.mail_service.get());
    builder.RegisterService(graph_.admin_service.get());
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(&metrics_));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    graph_.mail_service->AddCompletionQueues(builder);
    server_ = builder.BuildAndStart();
    graph_.mail_service->StartThreads();
  }
  ~InProcessServer() {
    graph_.admin_service->EndWatches();
    graph_.mailbox_watches->Shutdown();
    server_->Shutdown();
    server_->Wait();
    graph_.mail_service->StopThreads();
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  // `count` app-only grants of `app`, "bulk-10000", "bulk-10001", ...
  void AddBulkGrants(const std::string& app, int count) {
    for (int i = 0; i < count; ++i) {
      Grant g;
      g.id = absl::StrCat("bulk-", 10000 + i);
      g.app = app;
      g.mailbox = absl::StrCat(g.id, "@contoso.com");
      g.kind = GrantKind::kAppOnly;
      if (!vault_.CreateGrant(g).ok()) std::abort();  // a test's mistake
    }
  }
  grpc::Server& server() { return *server_; }
  Metrics& metrics() { return metrics_; }
  Vault& vault() { return vault_; }
  FakeMicrosoft& idp() { return idp_; }
  AuditTrail& audit() { return audit_; }
  InMemoryCredentialStore& store() { return store_; }

 private:
  Metrics metrics_;
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  FakeMicrosoft idp_;
  MicrosoftProvider microsoft_;
  Logger logger_{LogLevel::kError, [](absl::string_view) {}};
  AuditTrail audit_;
  // Moved into authorizer_ (built once, before it).
  std::pair<std::unique_ptr<IdentityResolver>, Policy> built_auth_;
  Authorizer authorizer_;
  CallGuard guard_;
  Config config_;
  ServiceGraph graph_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_IN_PROCESS_SERVER_H_
