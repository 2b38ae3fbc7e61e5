// Helpers for callback-API handlers that answer at once.
#ifndef TOKENBROKER_SERVICE_API_REACTORS_H_
#define TOKENBROKER_SERVICE_API_REACTORS_H_

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace tokenbroker {

// grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const grpc::Status& status);

// UNIMPLEMENTED for a method whose capability arrives in a later version:
// "<Method> is not available in this version of tokenbrokerd: <capability>".
grpc::Status NotYetAvailable(absl::string_view method, absl::string_view capability);

// A server-streaming reactor that finishes at once with a status.
template <typename Response>
class FinishedWriteReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedWriteReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_REACTORS_H_
