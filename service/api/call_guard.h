// Every RPC handler's first step: who is calling (identity), may they (policy,
// rate limit), and the audit event for a refusal. Handlers call Admit before
// any other work, so a refused call causes no store read, no provider request
// and no IMAP connection; they call Audit when an audited call ends.
// Thread-safe.
#ifndef TOKENBROKER_SERVICE_API_CALL_GUARD_H_
#define TOKENBROKER_SERVICE_API_CALL_GUARD_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "service/audit/audit_trail.h"
#include "service/authz/authorizer.h"

namespace tokenbroker {

struct CallContext {
  CallerIdentity caller;
  // The caller's `x-request-id` (1-64 of [A-Za-z0-9._-]) or one made up here;
  // sent back as trailing metadata.
  std::string request_id;
};

class CallGuard {
 public:
  // `plaintext_listener`: the server listens without TLS (loopback only), so
  // a caller without credentials may get the configured local identity.
  CallGuard(Authorizer& authorizer, AuditTrail& audit, bool plaintext_listener,
            std::function<void(Action, absl::string_view reason)> on_refused = nullptr);

  // The call's context, or the status to finish it with: UNAUTHENTICATED,
  // PERMISSION_DENIED or RESOURCE_EXHAUSTED (with trailing metadata
  // `retry-after-ms`). Refusals are audited here. `grant` empty: the call is
  // about the broker as a whole; `app` is only recorded.
  absl::StatusOr<CallContext> Admit(grpc::ServerContextBase* context, absl::string_view method, Action action,
                                    absl::string_view grant, absl::string_view app = "");

  // Identity only (no policy, no rate limit): for calls any known caller may
  // make. UNAUTHENTICATED is audited.
  absl::StatusOr<CallContext> Identify(grpc::ServerContextBase* context, absl::string_view method, Action action);

  // INVALID_ARGUMENT (audited) when the call has no deadline: for calls that
  // hold a scarce resource (an IMAP connection, an identity-provider
  // request) while they run. `why` ends the message.
  absl::Status RequireDeadline(grpc::ServerContextBase* context, const CallContext& call, absl::string_view method,
                               Action action, absl::string_view grant, absl::string_view why,
                               absl::string_view app = "");

  // Records how an admitted call ended.
  void Audit(const CallContext& call, absl::string_view method, Action action, absl::string_view grant,
             const absl::Status& result, absl::string_view app = "", absl::string_view detail = "");

  // Records a token answered from the cache (AuditTrail::RecordCacheHit).
  void AuditCacheHit(const CallContext& call, absl::string_view method, absl::string_view grant);

  // The policy alone (for filtering what a list shows); `labels`: the
  // grant's, when at hand.
  bool Allows(const CallContext& call, Action action, absl::string_view grant,
              const std::map<std::string, std::string>* labels = nullptr);

  AuditTrail& audit() { return audit_; }

 private:
  // Identity for a call about `grant`/`app` (recorded if refused).
  absl::StatusOr<CallContext> Identify(grpc::ServerContextBase* context, absl::string_view method, Action action,
                                       absl::string_view grant, absl::string_view app);

  // The audit event of a call by `caller` ("" when unknown); `detail`
  // defaults to the result's message.
  void Record(absl::string_view caller, const std::string& request_id, absl::string_view method, Action action,
              absl::string_view grant, const absl::Status& result, absl::string_view app, absl::string_view detail);

  Authorizer& authorizer_;
  AuditTrail& audit_;
  const bool plaintext_listener_;
  const std::function<void(Action, absl::string_view)> on_refused_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_CALL_GUARD_H_
