#include "service/api/admin_service.h"

#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/api/convert.h"
#include "service/api/queued_writer.h"
#include "service/api/reactors.h"
#include "service/common/status_macros.h"
#include "service/common/time_util.h"

namespace tokenbroker {
namespace {

constexpr uint32_t kMaxGrantsPerPage = 1000;

grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, const absl::Status& status) {
  return FinishUnary(context, ToGrpcStatus(status));
}

absl::Status RequireId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* AdminServiceImpl::OnWorker(grpc::CallbackServerContext* context,
                                                     std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued = workers_.Submit([reactor, work = std::move(work)] { reactor->Finish(ToGrpcStatus(work())); });
  if (!queued) {
    reactor->Finish(ToGrpcStatus(absl::ResourceExhaustedError("too many admin calls are waiting; retry with backoff")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::Guarded(grpc::CallbackServerContext* context, absl::string_view method,
                                                    Action action, absl::string_view grant, absl::string_view app,
                                                    std::function<absl::Status(const CallContext&)> body,
                                                    bool waits_for_provider, std::function<std::string()> grant_of) {
  return OnWorker(context, [this, context, method, action, grant = std::string(grant), app = std::string(app),
                            body = std::move(body), waits_for_provider, grant_of = std::move(grant_of)]() mutable {
    if (grant_of != nullptr) grant = grant_of();
    absl::StatusOr<CallContext> call = deps_.guard->Admit(context, method, action, grant, app);
    if (!call.ok()) return call.status();
    // Calls that wait for an identity provider must say how long they wait.
    if (action == Action::kConsent || waits_for_provider) {
      RETURN_IF_ERROR(deps_.guard->RequireDeadline(context, *call, method, action, grant,
                                                   "it waits for the identity provider", app));
    }
    absl::Status status = body(*call);
    // Changes and consents are audited; reads only when refused.
    if (action != Action::kAdminRead) deps_.guard->Audit(*call, method, action, grant, status, app);
    return status;
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetServerInfo(grpc::CallbackServerContext* context,
                                                          const v1::GetServerInfoRequest*, v1::ServerInfo* response) {
  // Any known caller: the version and state are not secret, and clients
  // use this call to check that they are configured right.
  absl::StatusOr<CallContext> call = deps_.guard->Identify(context, "AdminService/GetServerInfo", Action::kAdminRead);
  if (!call.ok()) return Respond(context, call.status());
  response->set_version(deps_.identity.version);
  response->set_revision(deps_.identity.revision);
  *response->mutable_start_time() = ToTimestamp(deps_.identity.start_time);
  response->set_store(deps_.identity.store);
  if (deps_.sealer != nullptr) response->set_active_key_id(deps_.sealer->active_key_id());
  return FinishUnary(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateApp(grpc::CallbackServerContext* context,
                                                      const v1::CreateAppRequest* request, v1::App* response) {
  // The request owns the secrets; take them out so they are wiped with the
  // CredentialInputs.
  auto* mutable_request = const_cast<v1::CreateAppRequest*>(request);
  return Guarded(context, "AdminService/CreateApp", Action::kAdminWrite, "", request->app().id(),
                 [=, this](const CallContext&) -> absl::Status {
                   ASSIGN_OR_RETURN(App spec, AppFromProto(request->app()));
                   std::vector<CredentialInput> inputs;
                   for (int i = 0; i < mutable_request->credentials_size(); ++i) {
                     ASSIGN_OR_RETURN(CredentialInput input,
                                      CredentialInputFromProto(mutable_request->mutable_credentials(i),
                                                               absl::StrCat("credentials[", i, "]")));
                     inputs.push_back(std::move(input));
                   }
                   ASSIGN_OR_RETURN(App app, deps_.vault->CreateApp(std::move(spec), std::move(inputs)));
                   AppToProto(app, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetApp(grpc::CallbackServerContext* context,
                                                   const v1::GetAppRequest* request, v1::App* response) {
  return Guarded(context, "AdminService/GetApp", Action::kAdminRead, "", request->id(),
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   ASSIGN_OR_RETURN(App app, deps_.vault->GetApp(request->id()));
                   AppToProto(app, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListApps(grpc::CallbackServerContext* context, const v1::ListAppsRequest*,
                                                     v1::ListAppsResponse* response) {
  return Guarded(context, "AdminService/ListApps", Action::kAdminRead, "", "", [=, this](const CallContext&) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<App> apps, deps_.vault->ListApps());
    for (const App& app : apps) AppToProto(app, response->add_apps());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteApp(grpc::CallbackServerContext* context,
                                                      const v1::DeleteAppRequest* request, google::protobuf::Empty*) {
  return Guarded(context, "AdminService/DeleteApp", Action::kAdminWrite, "", request->id(),
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   return deps_.vault->DeleteApp(request->id(), request->force());
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::AddAppCredential(grpc::CallbackServerContext* context,
                                                             const v1::AddAppCredentialRequest* request,
                                                             v1::App* response) {
  auto* mutable_request = const_cast<v1::AddAppCredentialRequest*>(request);
  return Guarded(context, "AdminService/AddAppCredential", Action::kAdminWrite, "", request->app(),
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("app", request->app()));
                   ASSIGN_OR_RETURN(CredentialInput input,
                                    CredentialInputFromProto(mutable_request->mutable_credential(), "credential"));
                   const size_t position = request->append() ? SIZE_MAX : request->position();
                   ASSIGN_OR_RETURN(App app, deps_.vault->AddCredential(request->app(), std::move(input), position));
                   AppToProto(app, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RemoveAppCredential(grpc::CallbackServerContext* context,
                                                                const v1::RemoveAppCredentialRequest* request,
                                                                v1::App* response) {
  return Guarded(context, "AdminService/RemoveAppCredential", Action::kAdminWrite, "", request->app(),
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("app", request->app()));
                   RETURN_IF_ERROR(RequireId("credential", request->credential()));
                   ASSIGN_OR_RETURN(App app, deps_.vault->RemoveCredential(request->app(), request->credential()));
                   AppToProto(app, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ReorderAppCredentials(grpc::CallbackServerContext* context,
                                                                  const v1::ReorderAppCredentialsRequest* request,
                                                                  v1::App* response) {
  return Guarded(context, "AdminService/ReorderAppCredentials", Action::kAdminWrite, "", request->app(),
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("app", request->app()));
                   std::vector<std::string> order(request->credentials().begin(), request->credentials().end());
                   ASSIGN_OR_RETURN(App app, deps_.vault->ReorderCredentials(request->app(), order));
                   AppToProto(app, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateGrant(grpc::CallbackServerContext* context,
                                                        const v1::CreateGrantRequest* request, v1::Grant* response) {
  return Guarded(context, "AdminService/CreateGrant", Action::kAdminWrite, request->grant().id(),
                 request->grant().app(), [=, this](const CallContext&) -> absl::Status {
                   ASSIGN_OR_RETURN(Grant spec, GrantFromProto(request->grant()));
                   ASSIGN_OR_RETURN(Grant grant, deps_.vault->CreateGrant(std::move(spec)));
                   GrantToProto(grant, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ImportGrant(grpc::CallbackServerContext* context,
                                                        const v1::ImportGrantRequest* request, v1::Grant* response) {
  auto* mutable_request = const_cast<v1::ImportGrantRequest*>(request);
  return Guarded(
      context, "AdminService/ImportGrant", Action::kAdminWrite, request->grant().id(), request->grant().app(),
      [=, this](const CallContext&) -> absl::Status {
        // The request owns the token; take it out so it is wiped with the Secret.
        Secret refresh_token(std::move(*mutable_request->mutable_refresh_token()));
        ASSIGN_OR_RETURN(Grant spec, GrantFromProto(request->grant()));
        if (request->replace()) {
          // An operator's replace changes a grant that exists; a typo must not
          // create a new one.
          absl::Status exists = deps_.vault->GetGrant(spec.id).status();
          if (absl::IsNotFound(exists)) {
            return absl::NotFoundError(absl::StrCat("grant \"", spec.id,
                                                    "\" does not exist; replace changes an existing grant (import "
                                                    "without --replace to create it)"));
          }
          RETURN_IF_ERROR(exists);
        }
        ASSIGN_OR_RETURN(Grant grant, deps_.vault->ImportGrant(std::move(spec), refresh_token, request->replace()));
        if (deps_.tokens != nullptr && request->verify()) {
          absl::Status verified = deps_.tokens->RefreshNow(grant.id);
          if (!verified.ok()) {
            return absl::Status(verified.code(), absl::StrCat("verify: the grant was stored, but ", verified.message()));
          }
          ASSIGN_OR_RETURN(grant, deps_.vault->GetGrant(grant.id));
        }
        GrantToProto(grant, response);
        return absl::OkStatus();
      },
      /*waits_for_provider=*/request->verify());
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetGrant(grpc::CallbackServerContext* context,
                                                     const v1::GetGrantRequest* request, v1::Grant* response) {
  return Guarded(context, "AdminService/GetGrant", Action::kAdminRead, request->id(), "",
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   ASSIGN_OR_RETURN(Grant grant, deps_.vault->GetGrant(request->id()));
                   GrantToProto(grant, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListGrants(grpc::CallbackServerContext* context,
                                                       const v1::ListGrantsRequest* request,
                                                       v1::ListGrantsResponse* response) {
  // Everyone with an identity may list: the list holds the grants the caller
  // may admin.read (all of them with a rule for "*"). Label rules are checked
  // against the labels the list already holds.
  static constexpr absl::string_view kMethod = "AdminService/ListGrants";
  return OnWorker(context, [this, context, request, response]() -> absl::Status {
    ASSIGN_OR_RETURN(CallContext call, deps_.guard->Identify(context, kMethod, Action::kAdminRead));
    GrantFilter filter;
    filter.app = request->app();
    if (request->state() != v1::GRANT_STATE_UNSPECIFIED) {
      ASSIGN_OR_RETURN(filter.state, GrantStateFromProto(request->state()));
    }
    if (request->page_size() > kMaxGrantsPerPage) {
      return absl::InvalidArgumentError(absl::StrCat("page_size: at most ", kMaxGrantsPerPage));
    }
    filter.limit = request->page_size() == 0 ? kMaxGrantsPerPage : request->page_size();
    if (!request->page_token().empty()) {
      // The token is the last id of the previous page, base64url: opaque to
      // callers, checked here.
      std::string after;
      if (!absl::WebSafeBase64Unescape(request->page_token(), &after) || !ValidateId("page_token", after).ok()) {
        return absl::InvalidArgumentError("page_token: not a token from a previous response");
      }
      filter.after_id = std::move(after);
    }
    const bool everything = deps_.guard->Allows(call, Action::kAdminRead, "");
    ASSIGN_OR_RETURN(std::vector<Grant> grants, deps_.vault->ListGrants(filter));
    for (const Grant& g : grants) {
      if (everything || deps_.guard->Allows(call, Action::kAdminRead, g.id, &g.labels)) {
        GrantToProto(g, response->add_grants());
      }
    }
    if (grants.size() == filter.limit) response->set_next_page_token(absl::WebSafeBase64Escape(grants.back().id));
    return absl::OkStatus();
  });
}

// One WatchGrants stream. The grant watch's worker delivers changes (Deliver)
// into a bounded queue; gRPC's write completions take the next one out. It
// finishes only once Begin (on an admin worker) is over, so that nothing
// runs on a deleted reactor.
class AdminServiceImpl::GrantChangeWriter final : public QueuedWriteReactor<v1::GrantChange> {
 public:
  // A watcher more than this many changes behind is ended.
  static constexpr size_t kMaxQueued = 10000;

  GrantChangeWriter(AdminServiceImpl* service, grpc::CallbackServerContext* context, v1::WatchGrantsRequest request)
      : QueuedWriteReactor(kMaxQueued), service_(service), context_(context), request_(std::move(request)) {
    absl::MutexLock lock(&mu_);
    HoldFinishLocked();
  }

  // On an admin worker: admits the call, subscribes, and queues the grants
  // that need someone now when asked for them.
  void Begin() {
    absl::Status status = Admit();
    if (status.ok()) {
      subscription_ = service_->deps_.grant_watch->Subscribe([this](const GrantStateChange& c) { Deliver(c); });
      if (request_.current()) status = QueueCurrent();
    }
    Begun(status);
  }

  // Begin is over (or will never run: `status` says why).
  void Begun(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) FinishLocked(status);  // held: remembered
    // The caller learns that the watch is live (subscribed) before any
    // change comes.
    if (!EndingLocked()) SendMetadataLocked();
    // Last: it may finish the stream, after which OnDone may delete this.
    ReleaseFinishLocked();
  }

  // Ends the stream with `status` (shutdown).
  void End(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  void OnDone() override {
    if (subscription_ != 0) service_->deps_.grant_watch->Unsubscribe(subscription_);
    {
      absl::MutexLock lock(&service_->watches_mu_);
      service_->watches_.erase(this);
    }
    delete this;
  }

 private:
  absl::Status OverflowStatusLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::ResourceExhaustedError(absl::StrCat("the watcher fell more than ", kMaxQueued,
                                                     " changes behind; watch again with current=true to catch up"));
  }

  absl::Status Admit() {
    ASSIGN_OR_RETURN(call_, service_->deps_.guard->Identify(context_, "AdminService/WatchGrants", Action::kAdminRead));
    if (!request_.app().empty()) RETURN_IF_ERROR(ValidateId("app", request_.app()));
    everything_ = service_->deps_.guard->Allows(call_, Action::kAdminRead, "");
    return absl::OkStatus();
  }

  bool Wants(const std::string& grant, const std::string& app, const std::map<std::string, std::string>& labels) {
    if (!request_.app().empty() && app != request_.app()) return false;
    return everything_ || service_->deps_.guard->Allows(call_, Action::kAdminRead, grant, &labels);
  }

  // The grants stuck in needs_reconsent or app_credential_invalid, in pages.
  absl::Status QueueCurrent() {
    for (GrantState state : {GrantState::kNeedsReconsent, GrantState::kAppCredentialInvalid}) {
      GrantFilter filter;
      filter.app = request_.app();
      filter.state = state;
      filter.limit = kMaxGrantsPerPage;
      while (true) {
        ASSIGN_OR_RETURN(std::vector<Grant> grants, service_->deps_.vault->ListGrants(filter));
        const bool more = grants.size() == filter.limit;
        if (more) filter.after_id = grants.back().id;  // before the grants move
        for (Grant& g : grants) {
          GrantStateChange c;
          c.grant_id = g.id;
          c.app = g.app;
          c.labels = g.labels;
          c.action = GrantRemedy(g);
          c.time = absl::Now();
          c.current = true;
          c.grant = std::move(g);
          Deliver(c);
        }
        if (!more) break;
      }
    }
    return absl::OkStatus();
  }

  void Deliver(const GrantStateChange& change) {
    if (!Wants(change.grant_id, change.app, change.labels)) return;
    v1::GrantChange out;
    out.set_grant(change.grant_id);
    if (change.grant.has_value()) {
      GrantToProto(*change.grant, out.mutable_current_grant());
    } else {
      out.set_deleted(true);
    }
    if (change.previous.has_value()) out.set_previous_state(static_cast<v1::GrantState>(*change.previous));
    out.set_action(change.action);
    *out.mutable_time() = ToTimestamp(change.time);
    out.set_current(change.current);
    absl::MutexLock lock(&mu_);
    (void)PushLocked(std::move(out));
  }

  AdminServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::WatchGrantsRequest request_;
  // Set by Begin before any change is delivered.
  CallContext call_;
  bool everything_ = false;
  uint64_t subscription_ = 0;
};

grpc::ServerWriteReactor<v1::GrantChange>* AdminServiceImpl::WatchGrants(grpc::CallbackServerContext* context,
                                                                          const v1::WatchGrantsRequest* request) {
  auto* writer = new GrantChangeWriter(this, context, *request);
  {
    absl::MutexLock lock(&watches_mu_);
    if (watches_ended_) {
      delete writer;
      return new FinishedWriteReactor<v1::GrantChange>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the broker is shutting down; watch again"));
    }
    watches_.insert(writer);
  }
  // Admission and the first reads go to a worker, never a callback thread.
  if (!workers_.Submit([writer] { writer->Begin(); })) {
    writer->Begun(absl::ResourceExhaustedError("too many admin calls are waiting; retry with backoff"));
  }
  return writer;
}

grpc::ServerUnaryReactor* AdminServiceImpl::DiagnoseGrant(grpc::CallbackServerContext* context,
                                                          const v1::DiagnoseGrantRequest* request,
                                                          v1::DiagnoseGrantResponse* response) {
  return Guarded(
      context, "AdminService/DiagnoseGrant", Action::kAdminRead, request->id(), "",
      [=, this](const CallContext&) -> absl::Status {
        RETURN_IF_ERROR(RequireId("id", request->id()));
        const std::string folder = request->folder().empty() ? "INBOX" : request->folder();
        ASSIGN_OR_RETURN(GrantDiagnosisReport report, deps_.diagnosis->Run(request->id(), folder));
        response->set_grant(report.grant_id);
        for (const DiagnosisStep& step : report.steps) {
          v1::DiagnosisStep* out = response->add_steps();
          out->set_name(step.name);
          out->set_result(step.result == DiagnosisStep::Result::kPassed   ? v1::DiagnosisStep::RESULT_PASSED
                          : step.result == DiagnosisStep::Result::kFailed ? v1::DiagnosisStep::RESULT_FAILED
                                                                          : v1::DiagnosisStep::RESULT_SKIPPED);
          out->set_detail(step.detail);
          out->set_fix(step.fix);
        }
        response->set_passed(report.passed());
        return absl::OkStatus();
      },
      /*waits_for_provider=*/true);
}

void AdminServiceImpl::EndWatches() {
  absl::MutexLock lock(&watches_mu_);
  watches_ended_ = true;
  for (GrantChangeWriter* writer : watches_) {
    writer->End(absl::UnavailableError("the broker is shutting down; watch again"));
  }
}

grpc::ServerUnaryReactor* AdminServiceImpl::DisableGrant(grpc::CallbackServerContext* context,
                                                         const v1::DisableGrantRequest* request, v1::Grant* response) {
  return Guarded(context, "AdminService/DisableGrant", Action::kAdminWrite, request->id(), "",
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   ASSIGN_OR_RETURN(Grant grant, deps_.vault->SetGrantEnabled(request->id(), false));
                   GrantToProto(grant, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::EnableGrant(grpc::CallbackServerContext* context,
                                                        const v1::EnableGrantRequest* request, v1::Grant* response) {
  return Guarded(context, "AdminService/EnableGrant", Action::kAdminWrite, request->id(), "",
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   ASSIGN_OR_RETURN(Grant grant, deps_.vault->SetGrantEnabled(request->id(), true));
                   GrantToProto(grant, response);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteGrant(grpc::CallbackServerContext* context,
                                                        const v1::DeleteGrantRequest* request,
                                                        google::protobuf::Empty*) {
  return Guarded(context, "AdminService/DeleteGrant", Action::kAdminWrite, request->id(), "",
                 [=, this](const CallContext&) -> absl::Status {
                   RETURN_IF_ERROR(RequireId("id", request->id()));
                   RETURN_IF_ERROR(deps_.vault->DeleteGrant(request->id()));
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::BeginAuthorization(grpc::CallbackServerContext* context,
                                                               const v1::BeginAuthorizationRequest* request,
                                                               v1::BeginAuthorizationResponse* response) {
  return Guarded(context, "AdminService/BeginAuthorization", Action::kConsent, request->grant().id(),
                 request->grant().app(), [=, this](const CallContext& call) -> absl::Status {
                   ASSIGN_OR_RETURN(Grant spec, GrantFromProto(request->grant()));
                   ASSIGN_OR_RETURN(
                       AuthorizationStart started,
                       deps_.consent->BeginAuthorization(std::move(spec), request->redirect_uri(),
                                                         request->login_hint(), request->prompt(), call.caller.name));
                   response->set_authorization_url(started.authorization_url);
                   response->set_state(started.state);
                   *response->mutable_expire_time() = ToTimestamp(started.expire_time);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CompleteAuthorization(grpc::CallbackServerContext* context,
                                                                  const v1::CompleteAuthorizationRequest* request,
                                                                  v1::Grant* response) {
  auto* mutable_request = const_cast<v1::CompleteAuthorizationRequest*>(request);
  return Guarded(
      context, "AdminService/CompleteAuthorization", Action::kConsent, "", "",
      [=, this](const CallContext& call) -> absl::Status {
        Secret code(std::move(*mutable_request->mutable_code()));
        ASSIGN_OR_RETURN(Grant grant,
                         deps_.consent->CompleteAuthorization(request->state(), std::move(code), call.caller.name));
        GrantToProto(grant, response);
        return absl::OkStatus();
      },
      /*waits_for_provider=*/false,
      // The policy is checked against the grant the state is for; an unknown
      // state is only answered to a caller with consent on every grant.
      [this, request] {
        absl::StatusOr<std::string> pending_grant = deps_.consent->PendingGrant(request->state());
        return pending_grant.ok() ? *pending_grant : std::string();
      });
}

grpc::ServerUnaryReactor* AdminServiceImpl::StartDeviceAuthorization(grpc::CallbackServerContext* context,
                                                                     const v1::StartDeviceAuthorizationRequest* request,
                                                                     v1::StartDeviceAuthorizationResponse* response) {
  return Guarded(context, "AdminService/StartDeviceAuthorization", Action::kConsent, request->grant().id(),
                 request->grant().app(), [=, this](const CallContext&) -> absl::Status {
                   ASSIGN_OR_RETURN(Grant spec, GrantFromProto(request->grant()));
                   ASSIGN_OR_RETURN(DeviceFlowStart started, deps_.consent->StartDeviceAuthorization(std::move(spec)));
                   response->set_user_code(started.user_code);
                   response->set_verification_uri(started.verification_uri);
                   response->set_message(started.message);
                   *response->mutable_expire_time() = ToTimestamp(started.expire_time);
                   *response->mutable_interval() = ToProtoDuration(started.interval);
                   response->set_grant(started.grant);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateKeys(grpc::CallbackServerContext* context,
                                                       const v1::RotateKeysRequest*, v1::RotateKeysResponse* response) {
  return Guarded(context, "AdminService/RotateKeys", Action::kAdminWrite, "", "",
                 [=, this](const CallContext&) -> absl::Status {
                   if (deps_.reload_keyring) RETURN_IF_ERROR(deps_.reload_keyring());
                   ASSIGN_OR_RETURN(KeyRotationReport report, deps_.vault->RotateKeys());
                   response->set_active_key_id(report.active_key_id);
                   response->set_resealed(report.resealed);
                   for (const std::string& id : report.keys_still_in_use) response->add_keys_still_in_use(id);
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListAuditEvents(grpc::CallbackServerContext* context,
                                                            const v1::ListAuditEventsRequest* request,
                                                            v1::ListAuditEventsResponse* response) {
  return Guarded(context, "AdminService/ListAuditEvents", Action::kAdminRead, "", "",
                 [=, this](const CallContext&) -> absl::Status {
                   if (request->page_size() > 1000) return absl::InvalidArgumentError("page_size: at most 1000");
                   // Events are written in the background: wait for those recorded so far
                   // (this call's own refusals included) so that the list is up to date.
                   deps_.guard->audit().Flush(absl::Seconds(2));
                   AuditFilter filter;
                   filter.caller = request->caller();
                   filter.action = request->action();
                   filter.grant = request->grant();
                   filter.result = request->result();
                   filter.since = FromTimestamp(request->since(), request->has_since());
                   filter.until = FromTimestamp(request->until(), request->has_until(), absl::InfiniteFuture());
                   filter.limit = request->page_size() == 0 ? 100 : static_cast<int>(request->page_size());
                   if (!request->page_token().empty() &&
                       (!absl::SimpleAtoi(request->page_token(), &filter.before_id) || filter.before_id <= 0)) {
                     return absl::InvalidArgumentError("page_token: not a token from a previous response");
                   }
                   ASSIGN_OR_RETURN(std::vector<AuditEvent> events, deps_.store->ListAuditEvents(filter));
                   for (const AuditEvent& e : events) AuditEventToProto(e, response->add_events());
                   if (static_cast<int>(events.size()) == filter.limit)
                     response->set_next_page_token(absl::StrCat(events.back().id));
                   return absl::OkStatus();
                 });
}

}  // namespace tokenbroker
