// OwnThreads: the threads and completion queues that OwnThreadUnary and
// OwnThreadStream serve one method on: one queue a thread, each thread asking
// its queue for one call at a time. `Call` is the derived class's record of a
// call, from being asked for until it ended; its `ending` is set once the
// call's end was sent, so that the end's completion frees it.
//
// The queues either poll (a waiting thread is one of gRPC's pollers: it reads
// the network itself, so a call of the method reaches it with no hand-off,
// but it also reads other calls' events and hands them on, which costs every
// other call) or do not (non_polling_queue.h: gRPC's callback threads read the
// network and wake the thread whose queue got a call; idle, it costs nothing).
// The server must have callback methods when the queues do not poll, and
// keep gRPC's callback threads from sleeping (CallbackThreadsAwake, as the
// broker does): calls served here give them no event.
//
// Lifecycle: AddQueues (before the server is built), Start (after it
// started), Stop (after its Shutdown and Wait returned; the derived class's
// destructor calls it too).
#ifndef TOKENBROKER_SERVICE_API_OWN_THREADS_H_
#define TOKENBROKER_SERVICE_API_OWN_THREADS_H_

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "service/api/non_polling_queue.h"

namespace tokenbroker {

enum class OwnThreadQueues { kPolling, kNonPolling };

template <typename Call>
class OwnThreads {
 public:
  using Queues = OwnThreadQueues;

  OwnThreads(const OwnThreads&) = delete;
  OwnThreads& operator=(const OwnThreads&) = delete;

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
      for (auto& queue : queues_) {
        void* tag = nullptr;
        bool ok = false;
        while (queue->Next(&tag, &ok)) delete static_cast<Call*>(tag);
      }
    }
    workers_.clear();
    queues_.clear();
  }

 protected:
  // `name`: the threads' name (at most 15 characters), as `top -H` shows it.
  OwnThreads(int threads, Queues queues, std::string name)
      : threads_(std::max(1, threads)), queue_kind_(queues), name_(std::move(name)) {}
  virtual ~OwnThreads() = default;

  // Asks gRPC for the next call on `queue`, tagged `call`.
  virtual void RequestOne(Call* call, grpc::ServerCompletionQueue* queue) = 0;
  // Serves a call that came on `queue` and sends its end (tagged `call`),
  // setting `call->ending` and calling AskForCall(queue) first: once the
  // server's Wait has returned (every end sent), no thread asks any more,
  // so Stop cannot shut a queue down under a request.
  virtual void ServeCall(Call* call, grpc::ServerCompletionQueue* queue) = 0;

  void AskForCall(grpc::ServerCompletionQueue* queue) { RequestOne(new Call, queue); }

 private:
  // One thread's loop: takes and serves calls until `queue` shuts down.
  void Serve(grpc::ServerCompletionQueue* queue) {
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) {
      auto* call = static_cast<Call*>(tag);
      // Not ok: the server is shutting down (no call came) or the end could
      // not be sent (the caller left); either way the call is over.
      if (!ok || call->ending) {
        delete call;
        continue;
      }
      ServeCall(call, queue);
    }
  }

  const int threads_;
  const Queues queue_kind_;
  const std::string name_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> workers_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_OWN_THREADS_H_
