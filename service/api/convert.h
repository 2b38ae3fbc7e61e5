// Translation between the v1 protos and the domain records. Nothing secret
// crosses from a record into a proto: credentials come out as metadata only.
#ifndef TOKENBROKER_SERVICE_API_CONVERT_H_
#define TOKENBROKER_SERVICE_API_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/timestamp.pb.h"
#include "service/store/model.h"
#include "service/vault/vault.h"
#include "tokenbroker/v1/resources.pb.h"

namespace tokenbroker {

google::protobuf::Timestamp ToTimestamp(absl::Time t);
// Unset timestamps are InfinitePast (or `unset`).
absl::Time FromTimestamp(const google::protobuf::Timestamp& t, bool present, absl::Time unset = absl::InfinitePast());

void AppToProto(const App& app, v1::App* out);
void GrantToProto(const Grant& grant, v1::Grant* out);
void AuditEventToProto(const AuditEvent& event, v1::AuditEvent* out);

// INVALID_ARGUMENT naming the field ("app.provider: required ...").
absl::StatusOr<App> AppFromProto(const v1::App& app);
absl::StatusOr<Grant> GrantFromProto(const v1::Grant& grant);
absl::StatusOr<GrantState> GrantStateFromProto(v1::GrantState state);
// Moves the secret out of `input` (the request's copy is wiped).
absl::StatusOr<CredentialInput> CredentialInputFromProto(v1::AppCredentialInput* input, const std::string& field);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_CONVERT_H_
