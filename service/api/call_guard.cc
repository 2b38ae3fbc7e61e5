#include "service/api/call_guard.h"

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "service/crypto/random.h"

namespace tokenbroker {
namespace {

absl::string_view Metadata(const grpc::ServerContextBase* context, const char* key) {
  const auto& md = context->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

// Caller-chosen names in audit events are cut short: a refused call may
// carry anything.
std::string Bounded(absl::string_view s) { return std::string(s.substr(0, 128)); }

bool IsRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// A random per-process prefix and a counter: unique, and cheap on every call.
std::string NewRequestId() {
  static const std::string prefix = RandomHex(4);
  static std::atomic<uint32_t> counter{0};
  return absl::StrCat(prefix, absl::Hex(counter.fetch_add(1, std::memory_order_relaxed), absl::kZeroPad8));
}

}  // namespace

CallGuard::CallGuard(Authorizer& authorizer, AuditTrail& audit, bool plaintext_listener,
                     std::function<void(Action, absl::string_view)> on_refused)
    : authorizer_(authorizer),
      audit_(audit),
      plaintext_listener_(plaintext_listener),
      on_refused_(std::move(on_refused)) {}

absl::StatusOr<CallContext> CallGuard::Identify(grpc::ServerContextBase* context, absl::string_view method,
                                                Action action) {
  return Identify(context, method, action, "", "");
}

absl::StatusOr<CallContext> CallGuard::Identify(grpc::ServerContextBase* context, absl::string_view method,
                                                Action action, absl::string_view grant, absl::string_view app) {
  CallContext call;
  const absl::string_view given_id = Metadata(context, "x-request-id");
  call.request_id = IsRequestId(given_id) ? std::string(given_id) : NewRequestId();
  // In the trailers: initial metadata would commit the call on the client
  // and stop gRPC's own retries of UNAVAILABLE.
  context->AddTrailingMetadata("x-request-id", call.request_id);

  CallerCredentials credentials;
  credentials.authorization = Metadata(context, "authorization");
  credentials.plaintext = plaintext_listener_;
  // Kept until Authenticate returns: the certificate is a view into it.
  std::shared_ptr<const grpc::AuthContext> auth;
  if (!plaintext_listener_) {
    auth = context->auth_context();
    if (auth != nullptr) {
      std::vector<grpc::string_ref> pem = auth->FindPropertyValues("x509_pem_cert");
      if (!pem.empty()) credentials.peer_certificate_pem = absl::string_view(pem.front().data(), pem.front().size());
    }
  }

  absl::StatusOr<CallerIdentity> identity = authorizer_.Authenticate(credentials);
  if (!identity.ok()) {
    if (on_refused_) on_refused_(action, "unauthenticated");
    Record("", call.request_id, method, action, grant, identity.status(), app, "");
    return identity.status();
  }
  call.caller = std::move(*identity);
  return call;
}

absl::StatusOr<CallContext> CallGuard::Admit(grpc::ServerContextBase* context, absl::string_view method,
                                             Action action, absl::string_view grant, absl::string_view app) {
  absl::StatusOr<CallContext> identified = Identify(context, method, action, grant, app);
  if (!identified.ok()) return identified.status();
  CallContext call = *std::move(identified);
  Authorization verdict = authorizer_.Authorize(call.caller, action, grant);
  if (!verdict.status.ok()) {
    const bool limited = absl::IsResourceExhausted(verdict.status);
    if (on_refused_) on_refused_(action, limited ? "rate_limited" : "permission_denied");
    if (limited) {
      context->AddTrailingMetadata(
          "retry-after-ms",
          absl::StrCat(absl::ToInt64Milliseconds(absl::Ceil(verdict.retry_after, absl::Milliseconds(1)))));
    }
    Audit(call, method, action, grant, verdict.status, app, verdict.status.message());
    return verdict.status;
  }
  return call;
}

absl::Status CallGuard::RequireDeadline(grpc::ServerContextBase* context, const CallContext& call,
                                        absl::string_view method, Action action, absl::string_view grant,
                                        absl::string_view why, absl::string_view app) {
  if (context->deadline() != std::chrono::system_clock::time_point::max()) return absl::OkStatus();
  absl::Status missing =
      absl::InvalidArgumentError(absl::StrCat("deadline: ", method, " must carry a deadline (a gRPC timeout): ", why));
  Audit(call, method, action, grant, missing, app);
  return missing;
}

void CallGuard::Audit(const CallContext& call, absl::string_view method, Action action, absl::string_view grant,
                      const absl::Status& result, absl::string_view app, absl::string_view detail) {
  Record(call.caller.name, call.request_id, method, action, grant, result, app, detail);
}

void CallGuard::Record(absl::string_view caller, const std::string& request_id, absl::string_view method, Action action,
                       absl::string_view grant, const absl::Status& result, absl::string_view app,
                       absl::string_view detail) {
  audit_.Record(AuditEvent{0, absl::InfinitePast(), std::string(caller), std::string(ActionName(action)),
                           std::string(method), Bounded(app), Bounded(grant),
                           std::string(absl::StatusCodeToString(result.code())),
                           std::string(detail.empty() ? result.message() : detail), request_id});
}

void CallGuard::AuditCacheHit(const CallContext& call, absl::string_view method, absl::string_view grant) {
  audit_.RecordCacheHit(call.caller.name, ActionName(Action::kTokenGet), method, grant, call.request_id);
}

bool CallGuard::Allows(const CallContext& call, Action action, absl::string_view grant,
                       const std::map<std::string, std::string>* labels) {
  return authorizer_.Allows(call.caller, action, grant, labels);
}

}  // namespace tokenbroker
