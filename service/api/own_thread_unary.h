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
// The queues either poll (a waiting thread is one of gRPC's pollers: it reads
// the network itself, so a call of this method reaches it with no hand-off,
// but it also reads other calls' events and hands them on, which costs every
// other call) or do not (non_polling_queue.h: gRPC's callback threads read the
// network and wake the thread whose queue got a call; idle, it costs nothing).
// The server must have callback methods when the queues do not poll.
//
// Lifecycle: AddQueues (before the server is built), Start (after it
// started), Stop (after its Shutdown and Wait returned). Thread-safe after
// Start.
#ifndef TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_
#define TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "service/api/non_polling_queue.h"

namespace tokenbroker {

template <typename Request, typename Response>
class OwnThreadUnary {
 public:
  // Asks gRPC for the next call of the method on `queue` (the generated
  // Request<Method>, or Service::RequestAsyncUnary), tagged `tag`.
  using RequestCall = std::function<void(grpc::ServerContext* context, Request* request,
                                         grpc::ServerAsyncResponseWriter<Response>* writer,
                                         grpc::ServerCompletionQueue* queue, void* tag)>;
  // Answers one call: fills `response` and returns OK, or returns the error
  // (then `response` is not sent).
  using Handler = std::function<grpc::Status(grpc::ServerContext* context, const Request& request, Response* response)>;

  enum class Queues { kPolling, kNonPolling };

  // `name`: the threads' name (at most 15 characters), as `top -H` shows it.
  OwnThreadUnary(int threads, Queues queues, std::string name, RequestCall request_call, Handler handler)
      : threads_(std::max(1, threads)),
        queue_kind_(queues),
        name_(std::move(name)),
        request_call_(std::move(request_call)),
        handler_(std::move(handler)) {}
  ~OwnThreadUnary() { Stop(); }
  OwnThreadUnary(const OwnThreadUnary&) = delete;
  OwnThreadUnary& operator=(const OwnThreadUnary&) = delete;

  // One completion queue a thread, from `builder`.
  void AddQueues(grpc::ServerBuilder& builder) {
    for (int i = 0; i < threads_; ++i) {
      queues_.push_back(queue_kind_ == Queues::kPolling ? builder.AddCompletionQueue()
                                                        : AddNonPollingCompletionQueue(builder));
    }
  }

  // Starts the threads; each asks for its first call.
  void Start() {
    for (auto& queue : queues_) {
      grpc::ServerCompletionQueue* q = queue.get();
      AskForCall(q);
      workers_.emplace_back([this, q] { Serve(q); });
      // Named here, so that every thread has its name once Start returns.
      pthread_setname_np(workers_.back().native_handle(), name_.substr(0, 15).c_str());
    }
  }

  // Shuts the queues down and joins the threads. Call after the server's
  // Shutdown and Wait: no call is then in flight, and every call asked for
  // has come back cancelled or comes back so.
  void Stop() {
    for (auto& queue : queues_) queue->Shutdown();
    for (std::thread& worker : workers_) worker.join();
    if (workers_.empty()) {  // never started: drain the queues here
      for (auto& queue : queues_) Drain(queue.get());
    }
    workers_.clear();
    queues_.clear();
  }

 private:
  // One call, from being asked for until its answer went out (or failed).
  struct Call {
    grpc::ServerContext context;
    Request request;
    Response response;
    grpc::ServerAsyncResponseWriter<Response> writer{&context};
    bool answered = false;
  };

  void AskForCall(grpc::ServerCompletionQueue* queue) {
    auto* call = new Call;
    request_call_(&call->context, &call->request, &call->writer, queue, call);
  }

  static void Drain(grpc::ServerCompletionQueue* queue) {
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) delete static_cast<Call*>(tag);
  }

  void Serve(grpc::ServerCompletionQueue* queue) {
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) {
      auto* call = static_cast<Call*>(tag);
      // Not ok: the server is shutting down (no call came) or the answer
      // could not be sent (the caller left); either way the call is over.
      if (!ok || call->answered) {
        delete call;
        continue;
      }
      const grpc::Status status = handler_(&call->context, call->request, &call->response);
      call->answered = true;
      // Asked for before answering: once the server's Wait has returned
      // (every answer sent), no thread asks any more, so Stop cannot shut a
      // queue down under a request.
      AskForCall(queue);
      if (status.ok()) {
        call->writer.Finish(call->response, status, call);
      } else {
        call->writer.FinishWithError(status, call);
      }
    }
  }

  const int threads_;
  const Queues queue_kind_;
  const std::string name_;
  const RequestCall request_call_;
  const Handler handler_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> workers_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_OWN_THREAD_UNARY_H_
