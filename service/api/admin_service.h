// tokenbroker.v1.AdminService over the callback API: translates requests to
// Vault calls and domain records back to protos. Never puts a secret in a
// response.
#ifndef TOKENBROKER_SERVICE_API_ADMIN_SERVICE_H_
#define TOKENBROKER_SERVICE_API_ADMIN_SERVICE_H_

#include <functional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/api/call_guard.h"
#include "service/common/executor.h"
#include "service/consent/consent_manager.h"
#include "service/crypto/sealer.h"
#include "service/mail/grant_diagnosis.h"
#include "service/store/credential_store.h"
#include "service/tokens/token_manager.h"
#include "service/vault/grant_watch.h"
#include "service/vault/vault.h"
#include "tokenbroker/v1/admin_service.grpc.pb.h"

namespace tokenbroker {

// What GetServerInfo reports that is fixed at start-up.
struct ServerIdentity {
  std::string version;
  std::string revision;
  absl::Time start_time;
  std::string store;
};

struct AdminServiceDeps {
  ServerIdentity identity;
  Vault* vault = nullptr;
  CredentialStore* store = nullptr;
  Sealer* sealer = nullptr;
  // ImportGrant with verify redeems the token once.
  TokenManager* tokens = nullptr;
  ConsentManager* consent = nullptr;
  // Re-reads the keyring file into the sealer before RotateKeys.
  std::function<absl::Status()> reload_keyring;
  // Admits every call (identity, policy, rate limit) and audits it.
  CallGuard* guard = nullptr;
  // WatchGrants' source of grant state changes.
  GrantWatch* grant_watch = nullptr;
  // DiagnoseGrant's checklist.
  GrantDiagnosis* diagnosis = nullptr;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  explicit AdminServiceImpl(AdminServiceDeps deps) : deps_(std::move(deps)) {}

  // Ends every WatchGrants stream with UNAVAILABLE (the broker is shutting
  // down; watch again). Called before the server drains.
  void EndWatches();

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request, v1::ServerInfo* response) override;
  grpc::ServerUnaryReactor* CreateApp(grpc::CallbackServerContext* context, const v1::CreateAppRequest* request,
                                      v1::App* response) override;
  grpc::ServerUnaryReactor* GetApp(grpc::CallbackServerContext* context, const v1::GetAppRequest* request,
                                   v1::App* response) override;
  grpc::ServerUnaryReactor* ListApps(grpc::CallbackServerContext* context, const v1::ListAppsRequest* request,
                                     v1::ListAppsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteApp(grpc::CallbackServerContext* context, const v1::DeleteAppRequest* request,
                                      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* AddAppCredential(grpc::CallbackServerContext* context,
                                             const v1::AddAppCredentialRequest* request, v1::App* response) override;
  grpc::ServerUnaryReactor* RemoveAppCredential(grpc::CallbackServerContext* context,
                                                const v1::RemoveAppCredentialRequest* request,
                                                v1::App* response) override;
  grpc::ServerUnaryReactor* ReorderAppCredentials(grpc::CallbackServerContext* context,
                                                  const v1::ReorderAppCredentialsRequest* request,
                                                  v1::App* response) override;
  grpc::ServerUnaryReactor* CreateGrant(grpc::CallbackServerContext* context, const v1::CreateGrantRequest* request,
                                        v1::Grant* response) override;
  grpc::ServerUnaryReactor* ImportGrant(grpc::CallbackServerContext* context, const v1::ImportGrantRequest* request,
                                        v1::Grant* response) override;
  grpc::ServerUnaryReactor* GetGrant(grpc::CallbackServerContext* context, const v1::GetGrantRequest* request,
                                     v1::Grant* response) override;
  grpc::ServerUnaryReactor* ListGrants(grpc::CallbackServerContext* context, const v1::ListGrantsRequest* request,
                                       v1::ListGrantsResponse* response) override;
  grpc::ServerUnaryReactor* DisableGrant(grpc::CallbackServerContext* context, const v1::DisableGrantRequest* request,
                                         v1::Grant* response) override;
  grpc::ServerUnaryReactor* EnableGrant(grpc::CallbackServerContext* context, const v1::EnableGrantRequest* request,
                                        v1::Grant* response) override;
  grpc::ServerUnaryReactor* DeleteGrant(grpc::CallbackServerContext* context, const v1::DeleteGrantRequest* request,
                                        google::protobuf::Empty* response) override;
  grpc::ServerWriteReactor<v1::GrantChange>* WatchGrants(grpc::CallbackServerContext* context,
                                                         const v1::WatchGrantsRequest* request) override;
  grpc::ServerUnaryReactor* DiagnoseGrant(grpc::CallbackServerContext* context,
                                          const v1::DiagnoseGrantRequest* request,
                                          v1::DiagnoseGrantResponse* response) override;
  grpc::ServerUnaryReactor* BeginAuthorization(grpc::CallbackServerContext* context,
                                               const v1::BeginAuthorizationRequest* request,
                                               v1::BeginAuthorizationResponse* response) override;
  grpc::ServerUnaryReactor* CompleteAuthorization(grpc::CallbackServerContext* context,
                                                  const v1::CompleteAuthorizationRequest* request,
                                                  v1::Grant* response) override;
  grpc::ServerUnaryReactor* StartDeviceAuthorization(grpc::CallbackServerContext* context,
                                                     const v1::StartDeviceAuthorizationRequest* request,
                                                     v1::StartDeviceAuthorizationResponse* response) override;
  grpc::ServerUnaryReactor* RotateKeys(grpc::CallbackServerContext* context, const v1::RotateKeysRequest* request,
                                       v1::RotateKeysResponse* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* context,
                                            const v1::ListAuditEventsRequest* request,
                                            v1::ListAuditEventsResponse* response) override;

 private:
  class GrantChangeWriter;

  // Every call runs on a worker (admin calls read and write the store, and
  // some wait for an identity provider, re-seal every secret or wait for the
  // audit trail): never on gRPC's callback threads. RESOURCE_EXHAUSTED when
  // too many wait.
  grpc::ServerUnaryReactor* OnWorker(grpc::CallbackServerContext* context, std::function<absl::Status()> work);
  // On a worker: admits the call (deps_.guard) for `grant` (or what
  // `grant_of` finds), runs `body`, audits changes and consents, and
  // finishes the call with body's status. Calls that wait for an identity
  // provider (consent, `waits_for_provider`) need a deadline.
  grpc::ServerUnaryReactor* Guarded(grpc::CallbackServerContext* context, absl::string_view method, Action action,
                                    absl::string_view grant, absl::string_view app,
                                    std::function<absl::Status(const CallContext&)> body,
                                    bool waits_for_provider = false, std::function<std::string()> grant_of = nullptr);

  const AdminServiceDeps deps_;
  absl::Mutex watches_mu_;
  std::set<GrantChangeWriter*> watches_ ABSL_GUARDED_BY(watches_mu_);
  bool watches_ended_ ABSL_GUARDED_BY(watches_mu_) = false;
  // Declared last: stopped (every queued call finished) before the rest goes.
  Executor workers_{4, 1000};
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_ADMIN_SERVICE_H_
