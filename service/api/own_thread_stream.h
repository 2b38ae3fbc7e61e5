// OwnThreadStream: one server-streaming method served through gRPC's async
// API on threads of its own, for a handler that blocks (on a mail server)
// while it writes: as OwnThreadUnary, but the handler writes its responses
// through a Writer as it goes.
//
// The thread that takes a call runs the handler, writes, and finishes the
// call itself: a write's completion comes back to the thread's own queue,
// where the thread waits for it before its next write, so the handler's
// steps never move to another thread (a gRPC callback thread, a worker).
// A thread asks for its next call only as it ends one, so a call never
// waits behind a busy thread (see OwnThreadUnary). The threads and their
// queues (polling or not) are OwnThreads'.
//
// Lifecycle as OwnThreadUnary's: AddQueues, Start, Stop.
#ifndef TOKENBROKER_SERVICE_API_OWN_THREAD_STREAM_H_
#define TOKENBROKER_SERVICE_API_OWN_THREAD_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "service/api/own_threads.h"

namespace tokenbroker {

namespace own_thread_internal {

// One streaming call, from being asked for until it ended.
template <typename Request, typename Response>
struct StreamCall {
  grpc::ServerContext context;
  Request request;
  grpc::ServerAsyncWriter<Response> stream{&context};
  Response out[2];
  bool ending = false;
};

}  // namespace own_thread_internal

template <typename Request, typename Response>
class OwnThreadStream final : private OwnThreads<own_thread_internal::StreamCall<Request, Response>> {
  using Call = own_thread_internal::StreamCall<Request, Response>;
  using Base = OwnThreads<Call>;

 public:
  // The handler's side of a call: two response buffers, one being filled
  // while the other is written, and one write in flight at a time.
  class Writer {
   public:
    // The buffer being filled.
    Response& Current() { return call_->out[next_]; }
    // The other buffer: free only while no write is in flight.
    Response& Other() { return call_->out[next_ ^ 1]; }
    // Waits for the write in flight, then writes Current() and switches to
    // the other buffer (cleared). CANCELLED if the caller went away.
    absl::Status Send() {
      if (absl::Status idle = AwaitIdle(); !idle.ok()) return idle;
      WriteCurrentAndSwitch();
      call_->out[next_].Clear();
      return absl::OkStatus();
    }
    // Waits until no write is in flight.
    absl::Status AwaitIdle() {
      while (writing_) {
        void* tag = nullptr;
        bool ok = false;
        if (!queue_->Next(&tag, &ok)) {  // shut down: not while a call is served
          cancelled_ = true;
          break;
        }
        Call* done = static_cast<Call*>(tag);
        if (done != call_) {  // an earlier call's end on this queue
          delete done;
          continue;
        }
        writing_ = false;
        if (!ok) cancelled_ = true;
      }
      if (cancelled_) return absl::CancelledError("the caller went away");
      return absl::OkStatus();
    }
    // Current() goes out with the call's status when the handler returns OK
    // (one step less than a write and then the status).
    void SendCurrentWithStatus() { last_ = true; }
    // Writes Current() now (nothing may be in flight), and Other() with the
    // call's status when the handler returns OK: a whole small message's
    // metadata and data, back to back.
    void SendTwoWithStatus() {
      WriteCurrentAndSwitch();
      last_ = true;
    }
    // Whether any response went out (then a failure cannot be retried unseen).
    bool sent_any() const { return sent_any_; }

   private:
    friend class OwnThreadStream;
    Writer(Call* call, grpc::ServerCompletionQueue* queue) : call_(call), queue_(queue) {}

    // Starts writing Current() (nothing in flight) and makes the other
    // buffer Current().
    void WriteCurrentAndSwitch() {
      call_->stream.Write(call_->out[next_], call_);
      writing_ = true;
      sent_any_ = true;
      next_ ^= 1;
    }

    Call* const call_;
    grpc::ServerCompletionQueue* const queue_;
    int next_ = 0;
    bool writing_ = false;
    bool cancelled_ = false;
    bool sent_any_ = false;
    bool last_ = false;
  };

  // Asks gRPC for the next call of the method on `queue` (the generated
  // Request<Method>, or Service::RequestAsyncServerStreaming), tagged `tag`.
  using RequestCall =
      std::function<void(grpc::ServerContext* context, Request* request, grpc::ServerAsyncWriter<Response>* stream,
                         grpc::ServerCompletionQueue* queue, void* tag)>;
  // Serves one call through `writer`; its status ends the call.
  using Handler = std::function<grpc::Status(grpc::ServerContext* context, const Request& request, Writer& writer)>;

  using Queues = OwnThreadQueues;

  // `name`: the threads' name (at most 15 characters), as `top -H` shows it.
  OwnThreadStream(int threads, Queues queues, std::string name, RequestCall request_call, Handler handler)
      : Base(threads, queues, std::move(name)), request_call_(std::move(request_call)), handler_(std::move(handler)) {}
  ~OwnThreadStream() override { Base::Stop(); }

  using Base::AddQueues;
  using Base::Start;
  using Base::Stop;

 private:
  void RequestOne(Call* call, grpc::ServerCompletionQueue* queue) override {
    request_call_(&call->context, &call->request, &call->stream, queue, call);
  }

  void ServeCall(Call* call, grpc::ServerCompletionQueue* queue) override {
    Writer writer(call, queue);
    grpc::Status status = handler_(&call->context, call->request, writer);
    const bool idle = writer.AwaitIdle().ok();
    if (status.ok() && !idle) status = grpc::Status(grpc::StatusCode::CANCELLED, "the caller went away");
    call->ending = true;
    this->AskForCall(queue);
    if (status.ok() && writer.last_) {
      call->stream.WriteAndFinish(writer.Current(), grpc::WriteOptions(), status, call);
    } else {
      call->stream.Finish(status, call);
    }
  }

  const RequestCall request_call_;
  const Handler handler_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_OWN_THREAD_STREAM_H_
