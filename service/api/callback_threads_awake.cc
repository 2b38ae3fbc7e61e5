#include "service/api/callback_threads_awake.h"

#include <chrono>

#include "absl/synchronization/notification.h"

namespace tokenbroker {

CallbackThreadsAwake::CallbackThreadsAwake(absl::Duration interval)
    // "unix:" names no address: every call fails at once (UNAVAILABLE,
    // "empty address list") with no connection, name lookup or log line.
    : channel_(grpc::CreateChannel("unix:", grpc::InsecureChannelCredentials())),
      stub_(std::make_unique<grpc::GenericStub>(channel_)),
      task_(interval, [this] { GiveOneEvent(); }) {}

void CallbackThreadsAwake::GiveOneEvent() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  absl::Notification done;
  // The callback runs on a callback thread: that is the event.
  stub_->UnaryCall(&context, "/tokenbroker.internal.Awake/Event", grpc::StubOptions(), &request, &response,
                   [&done](const grpc::Status&) { done.Notify(); });
  done.WaitForNotification();
}

}  // namespace tokenbroker
