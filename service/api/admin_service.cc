#include "service/api/admin_service.h"

#include "google/protobuf/util/time_util.h"
#include "service/api/reactors.h"

namespace tokenbroker {
namespace {

constexpr char kVault[] = "apps, grants and keys arrive with the credential vault";
constexpr char kConsent[] = "consent flows arrive with the token engine";
constexpr char kAudit[] = "the audit trail arrives with caller security";

}  // namespace

grpc::ServerUnaryReactor* AdminServiceImpl::GetServerInfo(grpc::CallbackServerContext* context,
                                                          const v1::GetServerInfoRequest*, v1::ServerInfo* response) {
  response->set_version(identity_.version);
  response->set_revision(identity_.revision);
  *response->mutable_start_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(identity_.start_time));
  response->set_store(identity_.store);
  response->set_active_key_id(identity_.active_key_id);
  return FinishUnary(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateApp(grpc::CallbackServerContext* context, const v1::CreateAppRequest*,
    v1::App*) {
  return FinishUnary(context, NotYetAvailable("CreateApp", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetApp(grpc::CallbackServerContext* context, const v1::GetAppRequest*,
    v1::App*) {
  return FinishUnary(context, NotYetAvailable("GetApp", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListApps(grpc::CallbackServerContext* context, const v1::ListAppsRequest*,
    v1::ListAppsResponse*) {
  return FinishUnary(context, NotYetAvailable("ListApps", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteApp(grpc::CallbackServerContext* context, const v1::DeleteAppRequest*,
    google::protobuf::Empty*) {
  return FinishUnary(context, NotYetAvailable("DeleteApp", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::AddAppCredential(grpc::CallbackServerContext* context, const v1::AddAppCredentialRequest*,
    v1::App*) {
  return FinishUnary(context, NotYetAvailable("AddAppCredential", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::RemoveAppCredential(grpc::CallbackServerContext* context, const v1::RemoveAppCredentialRequest*,
    v1::App*) {
  return FinishUnary(context, NotYetAvailable("RemoveAppCredential", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::ReorderAppCredentials(grpc::CallbackServerContext* context, const v1::ReorderAppCredentialsRequest*,
    v1::App*) {
  return FinishUnary(context, NotYetAvailable("ReorderAppCredentials", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateGrant(grpc::CallbackServerContext* context, const v1::CreateGrantRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("CreateGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::ImportGrant(grpc::CallbackServerContext* context, const v1::ImportGrantRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("ImportGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetGrant(grpc::CallbackServerContext* context, const v1::GetGrantRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("GetGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListGrants(grpc::CallbackServerContext* context, const v1::ListGrantsRequest*,
    v1::ListGrantsResponse*) {
  return FinishUnary(context, NotYetAvailable("ListGrants", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::DisableGrant(grpc::CallbackServerContext* context, const v1::DisableGrantRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("DisableGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::EnableGrant(grpc::CallbackServerContext* context, const v1::EnableGrantRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("EnableGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteGrant(grpc::CallbackServerContext* context, const v1::DeleteGrantRequest*,
    google::protobuf::Empty*) {
  return FinishUnary(context, NotYetAvailable("DeleteGrant", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::BeginAuthorization(grpc::CallbackServerContext* context, const v1::BeginAuthorizationRequest*,
    v1::BeginAuthorizationResponse*) {
  return FinishUnary(context, NotYetAvailable("BeginAuthorization", kConsent));
}

grpc::ServerUnaryReactor* AdminServiceImpl::CompleteAuthorization(grpc::CallbackServerContext* context, const v1::CompleteAuthorizationRequest*,
    v1::Grant*) {
  return FinishUnary(context, NotYetAvailable("CompleteAuthorization", kConsent));
}

grpc::ServerUnaryReactor* AdminServiceImpl::StartDeviceAuthorization(grpc::CallbackServerContext* context, const v1::StartDeviceAuthorizationRequest*,
    v1::StartDeviceAuthorizationResponse*) {
  return FinishUnary(context, NotYetAvailable("StartDeviceAuthorization", kConsent));
}

grpc::ServerUnaryReactor* AdminServiceImpl::RotateKeys(grpc::CallbackServerContext* context, const v1::RotateKeysRequest*,
    v1::RotateKeysResponse*) {
  return FinishUnary(context, NotYetAvailable("RotateKeys", kVault));
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListAuditEvents(grpc::CallbackServerContext* context, const v1::ListAuditEventsRequest*,
    v1::ListAuditEventsResponse*) {
  return FinishUnary(context, NotYetAvailable("ListAuditEvents", kAudit));
}

}  // namespace tokenbroker
