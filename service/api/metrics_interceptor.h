// Counts every RPC by method and status code and observes its latency
// (tokenbroker_grpc_requests_total, tokenbroker_grpc_request_duration_seconds).
#ifndef TOKENBROKER_SERVICE_API_METRICS_INTERCEPTOR_H_
#define TOKENBROKER_SERVICE_API_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "service/metrics/metrics.h"

namespace tokenbroker {

class MetricsInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server.
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_METRICS_INTERCEPTOR_H_
