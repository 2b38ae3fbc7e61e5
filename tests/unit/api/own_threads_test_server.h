// What the tests of OwnThreadUnary and OwnThreadStream share: the server
// they run, and how gtest shows a queue kind.
#ifndef TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_TEST_SERVER_H_
#define TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_TEST_SERVER_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "service/api/own_threads.h"

namespace tokenbroker {

// How gtest (and so ctest's list) shows an OwnThreads queue kind: found by
// argument-dependent lookup, so in the enum's own namespace.
inline void PrintTo(OwnThreadQueues queues, std::ostream* out) {
  *out << (queues == OwnThreadQueues::kPolling ? "polling" : "non-polling");
}

// A server on 127.0.0.1 with grpc.health.v1.Health as its one async service,
// one of whose methods the test serves on threads of its own (an
// OwnThreadUnary or OwnThreadStream that asks service() for its calls), and
// a callback generic service that answers any other method UNIMPLEMENTED (a
// broker always has callback methods, which queues that do not poll need).
class HealthOnOwnThreads {
 public:
  grpc::health::v1::Health::AsyncService& service() { return service_; }

  // Builds and starts the server with `threads`' queues (not the threads);
  // returns a channel to it.
  template <typename Threads>
  std::shared_ptr<grpc::Channel> Build(Threads& threads) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    builder.RegisterCallbackGenericService(&others_);
    threads.AddQueues(builder);
    server_ = builder.BuildAndStart();
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  }

  // The server's Shutdown and Wait, then the threads, as the broker does;
  // once.
  template <typename Threads>
  void Stop(Threads& threads) {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    threads.Stop();
    server_.reset();
  }

 private:
  grpc::health::v1::Health::AsyncService service_;
  grpc::CallbackGenericService others_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_TEST_SERVER_H_
