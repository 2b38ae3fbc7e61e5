#include "service/api/non_polling_queue.h"

#include <grpc/grpc.h>

#include <vector>

namespace tokenbroker {
namespace {

// `Get(Tag{})` returns the member pointer M. An explicit instantiation may
// name a private member; the friend function carries its pointer out.
template <typename Tag, typename Tag::type M>
struct MemberOf {
  friend typename Tag::type Get(Tag) { return M; }
};
struct QueueOfCompletionQueue {
  using type = grpc_completion_queue* grpc::CompletionQueue::*;
  friend type Get(QueueOfCompletionQueue);
};
struct QueuesOfServerBuilder {
  using type = std::vector<grpc::ServerCompletionQueue*> grpc::ServerBuilder::*;
  friend type Get(QueuesOfServerBuilder);
};
template struct MemberOf<QueueOfCompletionQueue, &grpc::CompletionQueue::cq_>;
template struct MemberOf<QueuesOfServerBuilder, &grpc::ServerBuilder::cqs_>;

class NonPollingServerQueue final : public grpc::ServerCompletionQueue {
 public:
  // The protected constructor made a polling queue, not yet used by anyone:
  // it is replaced by one of the same kind (NEXT) that does not poll.
  NonPollingServerQueue() {
    grpc_completion_queue*& queue = this->*Get(QueueOfCompletionQueue{});
    grpc_completion_queue_destroy(queue);
    grpc_completion_queue_attributes attributes{GRPC_CQ_CURRENT_VERSION, GRPC_CQ_NEXT, GRPC_CQ_NON_POLLING, nullptr};
    queue = grpc_completion_queue_create(grpc_completion_queue_factory_lookup(&attributes), &attributes, nullptr);
  }
};

}  // namespace

std::unique_ptr<grpc::ServerCompletionQueue> AddNonPollingCompletionQueue(grpc::ServerBuilder& builder) {
  auto queue = std::make_unique<NonPollingServerQueue>();
  // What AddCompletionQueue does with the queues it makes: BuildAndStart
  // registers each with the server (which does not own them).
  (builder.*Get(QueuesOfServerBuilder{})).push_back(queue.get());
  return queue;
}

}  // namespace tokenbroker
