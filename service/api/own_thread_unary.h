// OwnThreadUnary: one unary method served through gRPC's async API on
// threads of its own, for a handler that blocks (on a mail server) yet should
// answer with no hand-off between threads.
//
// Each thread owns one completion queue and asks it for one call at a time:
// the thread that takes a call runs the handler and answers it itself, and
// asks for the next call only once it has answered, so that a call is only
// ever taken by a free thread and never waits behind a busy one (calls beyond
// the threads wait in gRPC, unmatched, until a thread is free or their
// deadline passes). gRPC's callback threads never run the handler.
//
// The threads and their queues (polling or not) are OwnThreads'.
//
// Lifecycle: AddQueues (before the server is built), Start (after it
// started), Stop (after its Shutdown and Wait returned). Thread-safe after
// Start.
#ifndef TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_
#define TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <utility>

#include "service/api/own_threads.h"

namespace tokenbroker {

namespace own_thread_internal {

// One unary call, from being asked for until its answer went out (or failed).
template <typename Request, typename Response>
struct UnaryCall {
  grpc::ServerContext context;
  Request request;
  Response response;
  grpc::ServerAsyncResponseWriter<Response> writer{&context};
  bool ending = false;
};

}  // namespace own_thread_internal

template <typename Request, typename Response>
class OwnThreadUnary final : private OwnThreads<own_thread_internal::UnaryCall<Request, Response>> {
  using Call = own_thread_internal::UnaryCall<Request, Response>;
  using Base = OwnThreads<Call>;

 public:
  // Asks gRPC for the next call of the method on `queue` (the generated
  // Request<Method>, or Service::RequestAsyncUnary), tagged `tag`.
  using RequestCall = std::function<void(grpc::ServerContext* context, Request* request,
                                         grpc::ServerAsyncResponseWriter<Response>* writer,
                                         grpc::ServerCompletionQueue* queue, void* tag)>;
  // Answers one call: fills `response` and returns OK, or returns the error
  // (then `response` is not sent).
  using Handler = std::function<grpc::Status(grpc::ServerContext* context, const Request& request, Response* response)>;

  using Queues = OwnThreadQueues;

  // `name`: the threads' name (at most 15 characters), as `top -H` shows it.
  OwnThreadUnary(int threads, Queues queues, std::string name, RequestCall request_call, Handler handler)
      : Base(threads, queues, std::move(name)), request_call_(std::move(request_call)), handler_(std::move(handler)) {}
  ~OwnThreadUnary() override { Base::Stop(); }

  using Base::AddQueues;
  using Base::Start;
  using Base::Stop;

 private:
  void RequestOne(Call* call, grpc::ServerCompletionQueue* queue) override {
    request_call_(&call->context, &call->request, &call->writer, queue, call);
  }

  void ServeCall(Call* call, grpc::ServerCompletionQueue* queue) override {
    const grpc::Status status = handler_(&call->context, call->request, &call->response);
    call->ending = true;
    this->AskForCall(queue);
    if (status.ok()) {
      call->writer.Finish(call->response, status, call);
    } else {
      call->writer.FinishWithError(status, call);
    }
  }

  const RequestCall request_call_;
  const Handler handler_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_
