#include "service/api/metrics_interceptor.h"

#include <chrono>

namespace tokenbroker {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(GrpcMethodMetrics* metrics)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {}

  ~MetricsInterceptor() override {
    // A call that ended without sending a status was cancelled by the client.
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    const int index = static_cast<int>(code);
    metrics_->requests[index >= 0 && index < kGrpcStatusCodeCount ? index : 2]->Increment();
    metrics_->latency->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

  GrpcMethodMetrics* metrics_;
  std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

}  // namespace

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(&metrics_->ForGrpcMethod(info->method() != nullptr ? info->method() : ""));
}

}  // namespace tokenbroker
