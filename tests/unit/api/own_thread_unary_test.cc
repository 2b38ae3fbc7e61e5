#include "service/api/own_thread_unary.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>

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

using Threads = OwnThreadUnary<HealthCheckRequest, HealthCheckResponse>;

// Health/Check served by OwnThreadUnary with `handler` on threads named
// "own-unary" (HealthOnOwnThreads); any other method is a callback one.
class OwnThreadServer {
 public:
  OwnThreadServer(int threads, Threads::Queues queues, Threads::Handler handler)
      : threads_(
            threads, queues, "own-unary",
            [this](grpc::ServerContext* context, HealthCheckRequest* request,
                   grpc::ServerAsyncResponseWriter<HealthCheckResponse>* writer, grpc::ServerCompletionQueue* queue,
                   void* tag) { server_.service().RequestCheck(context, request, writer, queue, queue, tag); },
            std::move(handler)) {
    std::shared_ptr<grpc::Channel> channel = server_.Build(threads_);
    stub_ = Health::NewStub(channel);
    generic_stub_ = std::make_unique<grpc::GenericStub>(channel);
  }
  ~OwnThreadServer() { Stop(); }

  void Start() { threads_.Start(); }
  // The server's Shutdown and Wait, then the threads, as the broker does.
  void Stop() { server_.Stop(threads_); }

  grpc::Status Check(const std::string& service, HealthCheckResponse* response,
                     absl::Duration timeout = absl::Seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    HealthCheckRequest request;
    request.set_service(service);
    return stub_->Check(&context, request, response);
  }

  // A call of a method the server does not have, answered on gRPC's
  // callback threads.
  grpc::Status CallOther() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    generic_stub_->UnaryCall(&context, "/test.Other/Call", grpc::StubOptions(), &request, &response,
                             [&](grpc::Status s) {
                               status = std::move(s);
                               done.Notify();
                             });
    done.WaitForNotification();
    return status;
  }

 private:
  HealthOnOwnThreads server_;
  Threads threads_;
  std::unique_ptr<Health::Stub> stub_;
  std::unique_ptr<grpc::GenericStub> generic_stub_;
};

// Each test runs with queues that poll and with queues that do not.
class OwnThreadUnaryTest : public ::testing::TestWithParam<Threads::Queues> {};

TEST_P(OwnThreadUnaryTest, TheHandlersAnswerGoesOutAndAnErrorGoesOutAlone) {
  OwnThreadServer server(2, GetParam(),
                         [](grpc::ServerContext*, const HealthCheckRequest& request, HealthCheckResponse* response) {
                           response->set_status(HealthCheckResponse::SERVING);
                           if (request.service() == "missing")
                             return grpc::Status(grpc::StatusCode::NOT_FOUND, "service: no such service");
                           return grpc::Status::OK;
                         });
  server.Start();
  for (int i = 0; i < 20; ++i) {  // more calls than threads: each thread asks again
    HealthCheckResponse response;
    ASSERT_TRUE(server.Check("mail", &response).ok());
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  }
  HealthCheckResponse response;
  grpc::Status missing = server.Check("missing", &response);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "service: no such service");
  EXPECT_EQ(response.status(), HealthCheckResponse::UNKNOWN);  // the filled response was not sent
}

// A started server of `threads` threads, one of them busy with a call (for
// service "slow") that stays in its handler until Release; any other call is
// answered at once.
class ServerWithASlowCall {
 public:
  ServerWithASlowCall(int threads, Threads::Queues queues)
      : server_(threads, queues, [this](grpc::ServerContext*, const HealthCheckRequest& request, HealthCheckResponse*) {
          if (request.service() == "slow") {
            started_.Notify();
            release_.WaitForNotification();
          }
          return grpc::Status::OK;
        }) {
    server_.Start();
    caller_ = std::thread([this] {
      HealthCheckResponse response;
      slow_status_ = server_.Check("slow", &response);
    });
    started_.WaitForNotification();
  }
  ~ServerWithASlowCall() {
    if (caller_.joinable()) Release();
  }

  OwnThreadServer& server() { return server_; }
  // Lets the slow call end; how it ended.
  grpc::Status Release() {
    release_.Notify();
    caller_.join();
    return slow_status_;
  }

 private:
  absl::Notification started_;
  absl::Notification release_;
  OwnThreadServer server_;
  std::thread caller_;
  grpc::Status slow_status_;
};

// A thread busy with a slow call has asked for no other: the next call goes
// to a free thread and is answered while the slow one still runs.
TEST_P(OwnThreadUnaryTest, ACallIsTakenByAFreeThreadNeverQueuedBehindABusyOne) {
  ServerWithASlowCall slow(2, GetParam());
  // Many quick calls, each of which would wait until the slow one ends (and
  // so miss its deadline) if it were taken by the busy thread.
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    HealthCheckResponse response;
    if (!slow.server().Check("quick", &response, absl::Seconds(5)).ok()) break;
    ++answered;
  }
  EXPECT_EQ(answered, 20) << "a quick call waited behind the slow one";
  EXPECT_TRUE(slow.Release().ok());
}

// Every thread busy: a call waits in gRPC for one (it is not refused), and
// one whose deadline passes first ends DEADLINE_EXCEEDED; once a thread is
// free again, calls are answered.
TEST_P(OwnThreadUnaryTest, ACallBeyondTheBusyThreadsWaitsUntilItsDeadline) {
  ServerWithASlowCall slow(1, GetParam());
  HealthCheckResponse response;
  EXPECT_EQ(slow.server().Check("quick", &response, absl::Milliseconds(300)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(slow.Release().ok());
  EXPECT_TRUE(slow.server().Check("quick", &response).ok());
}

// Shutting down with a call still in its handler: the server waits for it,
// the caller gets its answer, and Stop leaves nothing behind (ASan checks the
// calls were freed).
TEST_P(OwnThreadUnaryTest, ShutdownWaitsForACallInItsHandler) {
  absl::Notification started;
  absl::Notification release;
  std::atomic<int> answered{0};
  OwnThreadServer server(2, GetParam(),
                         [&](grpc::ServerContext*, const HealthCheckRequest&, HealthCheckResponse* response) {
                           started.Notify();
                           release.WaitForNotification();
                           response->set_status(HealthCheckResponse::NOT_SERVING);
                           ++answered;
                           return grpc::Status::OK;
                         });
  server.Start();
  grpc::Status status;
  HealthCheckResponse response;
  std::thread caller([&] { status = server.Check("busy", &response); });
  started.WaitForNotification();
  std::thread stopper([&] { server.Stop(); });
  release.Notify();
  stopper.join();
  caller.join();
  EXPECT_EQ(answered.load(), 1);
  // The server cancels what is still running at its shutdown deadline (now):
  // the caller sees the answer, CANCELLED, or UNAVAILABLE when the closing
  // connection reaches it before the cancellation does; never a hang.
  if (status.ok()) {
    EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  } else {
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::CANCELLED ||
                status.error_code() == grpc::StatusCode::UNAVAILABLE)
        << status.error_code() << ": " << status.error_message();
  }
}

TEST_P(OwnThreadUnaryTest, AServerStoppedBeforeItsThreadsStartedLeavesNothingBehind) {
  OwnThreadServer server(3, GetParam(), [](grpc::ServerContext*, const HealthCheckRequest&, HealthCheckResponse*) {
    return grpc::Status::OK;
  });
  server.Stop();  // never started: Stop drains the queues itself
}

INSTANTIATE_TEST_SUITE_P(BothQueues, OwnThreadUnaryTest,
                         ::testing::Values(Threads::Queues::kPolling, Threads::Queues::kNonPolling),
                         [](const ::testing::TestParamInfo<Threads::Queues>& info) {
                           return info.param == Threads::Queues::kPolling ? "Polling" : "NonPolling";
                         });

// Voluntary context switches of each of this process's threads named
// `name`, by thread id.
std::map<std::string, long> SwitchesOfThreadsNamed(const std::string& name) {
  std::map<std::string, long> switches;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string thread_name;
    std::getline(comm, thread_name);
    if (thread_name != name) continue;
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        switches[task.path().filename().string()] = std::stol(line.substr(line.find(':') + 1));
      }
    }
  }
  return switches;
}

// Idle threads on queues that do not poll sleep through other calls: none of
// the other calls' network events wakes them (a polling queue's thread is one
// of gRPC's pollers, and is woken again and again).
TEST(OwnThreadUnaryQueuesTest, IdleThreadsOnQueuesThatDoNotPollSleepThroughOtherCalls) {
  OwnThreadServer server(4, Threads::Queues::kNonPolling,
                         [](grpc::ServerContext*, const HealthCheckRequest&, HealthCheckResponse* response) {
                           response->set_status(HealthCheckResponse::SERVING);
                           return grpc::Status::OK;
                         });
  server.Start();
  HealthCheckResponse response;
  ASSERT_TRUE(server.Check("mail", &response).ok());  // they serve their own method
  ASSERT_EQ(server.CallOther().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  const std::map<std::string, long> before = SwitchesOfThreadsNamed("own-unary");
  ASSERT_EQ(before.size(), 4u);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(server.CallOther().error_code(), grpc::StatusCode::UNIMPLEMENTED);
  const std::map<std::string, long> after = SwitchesOfThreadsNamed("own-unary");
  long woken = 0;
  for (const auto& [thread, switches] : after) woken += switches - before.at(thread);
  // 500 calls on the callback threads; a waiter that took part in polling
  // would be woken for many of them. A few wakes are allowed for gRPC's own
  // housekeeping.
  EXPECT_LT(woken, 25) << "the idle threads were woken by other calls";
  ASSERT_TRUE(server.Check("mail", &response).ok());
}

}  // namespace
}  // namespace tokenbroker
