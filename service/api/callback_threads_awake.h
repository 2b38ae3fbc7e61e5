// CallbackThreadsAwake: keeps gRPC's callback threads from sleeping, so that
// some thread always reads the network.
//
// gRPC 1.51 reads the network on the threads that wait on a polling
// completion queue (its poller on Linux, epoll1, has one set of file
// descriptors for the whole process). In a broker those are the callback
// API's two threads (`nexting_thread`), and also the threads of GetMessage
// and FetchMessage only when they are set to poll (OwnThreads). A callback
// thread waits for a callback event for at most a second and, when none
// came, sleeps 100 ms before it waits again (CallbackAlternativeCQ in
// gRPC's completion_queue_cc.cc); both usually time out together. Calls to
// the methods on threads of their own give the callback threads no event,
// so while only those were called, every 1.1 s nothing read the network for
// up to 100 ms: a request, or the window update that a stream's next write
// waits for, sat unread in the socket (GetMessage calls back to back: about
// one in 1.1 s took 100 ms; a 100 MB FetchMessage on its own threads waited
// 40-80 ms for a write 1-3 times per run; docs/benchmarks.md). An idle
// broker's first call could wait the same.
//
// Every `interval` (less than the callback threads' second) this starts one
// call with the callback API on a channel to no address at all, which fails
// at once without a connection: its completion is a callback event, and a
// callback thread that gets one waits a whole second again. At least one of
// the two has always had an event within the last `interval`, so at least
// one is always waiting in the poller. About 50 us of work 2.5 times a
// second.
//
// Other ways measured and not taken: a thread of the broker's own waiting in
// the poller all the time (it takes part in every call's polling); one that
// takes a short turn in the poller every millisecond (3% of a core idle, and
// 3-5% off GetMessage's throughput while in use).
#ifndef TOKENBROKER_SERVICE_API_CALLBACK_THREADS_AWAKE_H_
#define TOKENBROKER_SERVICE_API_CALLBACK_THREADS_AWAKE_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/time/time.h"
#include "service/common/periodic_task.h"

namespace tokenbroker {

class CallbackThreadsAwake {
 public:
  explicit CallbackThreadsAwake(absl::Duration interval = absl::Milliseconds(400));
  CallbackThreadsAwake(const CallbackThreadsAwake&) = delete;
  CallbackThreadsAwake& operator=(const CallbackThreadsAwake&) = delete;
  ~CallbackThreadsAwake() { Stop(); }

  // The first event is one interval after Start.
  void Start() { task_.Start(); }
  // Returns once no call of this is in flight.
  void Stop() { task_.Stop(); }

 private:
  // Starts one call on the channel to no address and waits for its callback.
  void GiveOneEvent();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  PeriodicTask task_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_CALLBACK_THREADS_AWAKE_H_
