// AddNonPollingCompletionQueue: a server completion queue whose waiting
// thread does not poll gRPC's network events.
//
// gRPC's default poller on Linux (epoll1) has one set of file descriptors for
// the whole process, and any thread waiting on any polling completion queue
// may be the one that reads the next event, of any call. A thread of the
// broker's own that waits on such a queue therefore reads other calls'
// requests too and hands them to gRPC's callback threads: an extra wake a
// call (docs/benchmarks.md). gRPC's core offers queues that do not poll
// (GRPC_CQ_NON_POLLING: the thread waits on a condition variable, woken when
// a completion lands in its queue), and a server may take calls on them;
// gRPC 1.51's C++ API just gives no way to make one: ServerCompletionQueue's
// constructor with a polling type and ServerBuilder's list of queues are
// private. This creates the queue through gRPC's core API and hands it to the
// builder, reaching those two members through explicit template
// instantiation (which C++ exempts from access checks), so that it compiles
// only against a gRPC that still has them, as Debian 12's 1.51 does.
//
// The server must also have polling threads of its own (the callback API's,
// which every broker has, kept from sleeping by CallbackThreadsAwake): they
// read the network and complete the queue.
#ifndef TOKENBROKER_SERVICE_API_NON_POLLING_QUEUE_H_
#define TOKENBROKER_SERVICE_API_NON_POLLING_QUEUE_H_

#include <grpcpp/grpcpp.h>

#include <memory>

namespace tokenbroker {

// Before BuildAndStart, like ServerBuilder::AddCompletionQueue; the queue is
// the caller's, to shut down and drain after the server's Shutdown.
std::unique_ptr<grpc::ServerCompletionQueue> AddNonPollingCompletionQueue(grpc::ServerBuilder& builder);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_NON_POLLING_QUEUE_H_
