#include "service/api/own_thread_stream.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/unit/api/own_threads_test_server.h"

namespace tokenbroker {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

using Stream = OwnThreadStream<HealthCheckRequest, HealthCheckResponse>;

// Health/Watch (server streaming) served by OwnThreadStream with `handler`
// on threads named "own-stream" (HealthOnOwnThreads).
class OwnStreamServer {
 public:
  OwnStreamServer(int threads, Stream::Queues queues, Stream::Handler handler)
      : threads_(
            threads, queues, "own-stream",
            [this](grpc::ServerContext* context, HealthCheckRequest* request,
                   grpc::ServerAsyncWriter<HealthCheckResponse>* stream, grpc::ServerCompletionQueue* queue,
                   void* tag) { server_.service().RequestWatch(context, request, stream, queue, queue, tag); },
            std::move(handler)) {
    stub_ = Health::NewStub(server_.Build(threads_));
    threads_.Start();
  }
  ~OwnStreamServer() { server_.Stop(threads_); }

  // What one call of service `service` returned.
  struct Result {
    std::vector<HealthCheckResponse::ServingStatus> responses;
    grpc::Status status;
  };
  Result Watch(const std::string& service, absl::Duration timeout = absl::Seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    HealthCheckRequest request;
    request.set_service(service);
    std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader = stub_->Watch(&context, request);
    Result result;
    HealthCheckResponse response;
    while (reader->Read(&response)) result.responses.push_back(response.status());
    result.status = reader->Finish();
    return result;
  }

  Health::Stub& stub() { return *stub_; }

 private:
  HealthOnOwnThreads server_;
  Stream threads_;
  std::unique_ptr<Health::Stub> stub_;
};

using Status = HealthCheckResponse;

// Sends `statuses` one write each, the last with the call's status.
absl::Status SendAll(Stream::Writer& writer, const std::vector<HealthCheckResponse::ServingStatus>& statuses) {
  for (size_t i = 0; i < statuses.size(); ++i) {
    writer.Current().set_status(statuses[i]);
    if (i + 1 == statuses.size()) {
      writer.SendCurrentWithStatus();
    } else if (absl::Status sent = writer.Send(); !sent.ok()) {
      return sent;
    }
  }
  return absl::OkStatus();
}

class OwnThreadStreamTest : public ::testing::TestWithParam<Stream::Queues> {};

// Every way a handler ends a call: responses and then the last with the
// status, two held back to back, responses and then an error (the held one
// is then not sent), nothing at all.
TEST_P(OwnThreadStreamTest, ResponsesGoOutInOrderAndTheCallEndsWithTheHandlersStatus) {
  OwnStreamServer server(2, GetParam(),
                         [](grpc::ServerContext*, const HealthCheckRequest& request, Stream::Writer& writer) {
                           if (request.service() == "many") {
                             std::vector<HealthCheckResponse::ServingStatus> statuses;
                             for (int i = 0; i < 50; ++i)
                               statuses.push_back(i % 2 ? Status::SERVING : Status::NOT_SERVING);
                             statuses.push_back(Status::SERVICE_UNKNOWN);
                             return grpc::Status(grpc::StatusCode(SendAll(writer, statuses).raw_code()), "");
                           }
                           if (request.service() == "two") {
                             writer.Current().set_status(Status::SERVING);
                             writer.Other().set_status(Status::NOT_SERVING);
                             writer.SendTwoWithStatus();
                             return grpc::Status::OK;
                           }
                           if (request.service() == "fails") {
                             writer.Current().set_status(Status::SERVING);
                             EXPECT_TRUE(writer.Send().ok());
                             writer.Current().set_status(Status::NOT_SERVING);
                             writer.SendCurrentWithStatus();  // not sent: the status is an error
                             EXPECT_TRUE(writer.sent_any());
                             return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the mail server went away");
                           }
                           EXPECT_FALSE(writer.sent_any());
                           return grpc::Status(grpc::StatusCode::NOT_FOUND, "service: no such service");
                         });
  for (int round = 0; round < 5; ++round) {  // more calls than threads: each thread asks again
    OwnStreamServer::Result many = server.Watch("many");
    ASSERT_TRUE(many.status.ok()) << many.status.error_message();
    ASSERT_EQ(many.responses.size(), 51u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(many.responses[i], i % 2 ? Status::SERVING : Status::NOT_SERVING) << i;
    EXPECT_EQ(many.responses.back(), Status::SERVICE_UNKNOWN);

    OwnStreamServer::Result two = server.Watch("two");
    ASSERT_TRUE(two.status.ok()) << two.status.error_message();
    EXPECT_EQ(two.responses, (std::vector<HealthCheckResponse::ServingStatus>{Status::SERVING, Status::NOT_SERVING}));

    OwnStreamServer::Result fails = server.Watch("fails");
    EXPECT_EQ(fails.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(fails.status.error_message(), "the mail server went away");
    EXPECT_EQ(fails.responses, std::vector<HealthCheckResponse::ServingStatus>{Status::SERVING});

    OwnStreamServer::Result missing = server.Watch("missing");
    EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(missing.responses.empty());
  }
}

// A caller that stops reading and cancels: the handler's next write fails
// with CANCELLED (it does not write forever, nor hang), and the thread
// serves the next call.
TEST_P(OwnThreadStreamTest, ACallerThatLeavesFailsTheHandlersWritesAndFreesItsThread) {
  absl::Notification handler_saw_cancel;
  std::atomic<int> written{0};
  OwnStreamServer server(
      1, GetParam(), [&](grpc::ServerContext*, const HealthCheckRequest& request, Stream::Writer& writer) {
        if (request.service() != "endless")
          return SendAll(writer, {Status::SERVING}).ok() ? grpc::Status::OK : grpc::Status::CANCELLED;
        for (;;) {
          writer.Current().set_status(Status::SERVING);
          if (absl::Status sent = writer.Send(); !sent.ok()) {
            EXPECT_TRUE(absl::IsCancelled(sent)) << sent;
            handler_saw_cancel.Notify();
            return grpc::Status(grpc::StatusCode::CANCELLED, std::string(sent.message()));
          }
          ++written;
        }
      });
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    HealthCheckRequest request;
    request.set_service("endless");
    auto reader = server.stub().Watch(&context, request);
    HealthCheckResponse response;
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  handler_saw_cancel.WaitForNotification();
  EXPECT_GT(written.load(), 0);
  // The one thread is free again.
  OwnStreamServer::Result next = server.Watch("next");
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.responses, std::vector<HealthCheckResponse::ServingStatus>{Status::SERVING});
}

// A thread busy with a slow stream has asked for no other call: the next
// call goes to a free thread; with every thread busy a call waits in gRPC
// until its deadline.
TEST_P(OwnThreadStreamTest, ACallIsTakenByAFreeThreadAndBeyondTheBusyOnesWaitsUntilItsDeadline) {
  absl::Mutex mu;
  int holding = 0;  // slow calls in their handler
  absl::Notification release;
  OwnStreamServer server(2, GetParam(),
                         [&](grpc::ServerContext*, const HealthCheckRequest& request, Stream::Writer& writer) {
                           if (request.service() == "slow") {
                             writer.Current().set_status(Status::NOT_SERVING);
                             if (!writer.Send().ok()) return grpc::Status::CANCELLED;
                             {
                               absl::MutexLock lock(&mu);
                               ++holding;
                             }
                             release.WaitForNotification();
                           }
                           return SendAll(writer, {Status::SERVING}).ok() ? grpc::Status::OK : grpc::Status::CANCELLED;
                         });
  auto await_holding = [&](int n) {
    const auto held = [&] { return holding >= n; };
    absl::MutexLock lock(&mu, absl::Condition(&held));
  };
  OwnStreamServer::Result slow;
  std::thread slow_caller([&] { slow = server.Watch("slow"); });
  await_holding(1);
  for (int i = 0; i < 20; ++i) {
    OwnStreamServer::Result quick = server.Watch("quick", absl::Seconds(5));
    ASSERT_TRUE(quick.status.ok()) << "a quick call waited behind the slow one: " << quick.status.error_message();
  }
  // Both threads busy: a call waits for a thread until its deadline.
  OwnStreamServer::Result second;
  std::thread second_caller([&] { second = server.Watch("slow"); });
  await_holding(2);
  EXPECT_EQ(server.Watch("quick", absl::Milliseconds(300)).status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  release.Notify();
  slow_caller.join();
  second_caller.join();
  EXPECT_TRUE(slow.status.ok()) << slow.status.error_message();
  EXPECT_EQ(slow.responses, (std::vector<HealthCheckResponse::ServingStatus>{Status::NOT_SERVING, Status::SERVING}));
  EXPECT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_TRUE(server.Watch("quick").status.ok());
}

INSTANTIATE_TEST_SUITE_P(BothQueues, OwnThreadStreamTest,
                         ::testing::Values(Stream::Queues::kPolling, Stream::Queues::kNonPolling),
                         [](const ::testing::TestParamInfo<Stream::Queues>& info) {
                           return info.param == Stream::Queues::kPolling ? "Polling" : "NonPolling";
                         });

}  // namespace
}  // namespace tokenbroker
