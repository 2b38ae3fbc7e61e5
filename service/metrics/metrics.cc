#include "service/metrics/metrics.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tokenbroker {

std::string GrpcCodeName(int code) {
  // gRPC's codes are Abseil's canonical codes, with the same names.
  if (code < 0 || code >= kGrpcStatusCodeCount) return "UNKNOWN";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

const std::vector<double>& Metrics::LatencyBuckets() {
  static const std::vector<double>* buckets = new std::vector<double>{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}

Metrics::Metrics(const BuildInfo& build, const std::vector<std::string>& grpc_methods)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("tokenbroker_build_info")
      .Help("Always 1; the labels say which build is running.")
      .Register(*registry_)
      .Add({{"version", build.version}, {"revision", build.revision}})
      .Set(1);
  grpc_requests_ = &prometheus::BuildCounter()
                        .Name("tokenbroker_grpc_requests_total")
                        .Help("gRPC requests handled, by method and status code.")
                        .Register(*registry_);
  grpc_latency_ = &prometheus::BuildHistogram()
                       .Name("tokenbroker_grpc_request_duration_seconds")
                       .Help("Time from receiving a gRPC request to sending its status, by method.")
                       .Register(*registry_);
  auto add_method = [this](const std::string& method) {
    GrpcMethodMetrics& m = grpc_methods_[method];
    for (int code = 0; code < kGrpcStatusCodeCount; ++code) {
      m.requests[code] = &grpc_requests_->Add({{"method", method}, {"code", std::string(GrpcCodeName(code))}});
    }
    m.latency = &grpc_latency_->Add({{"method", method}}, LatencyBuckets());
  };
  for (const std::string& method : grpc_methods) add_method(std::string(absl::StripPrefix(method, "/")));
  add_method("unknown");
  unknown_method_ = &grpc_methods_.at("unknown");

  auto& token_requests = prometheus::BuildCounter()
                             .Name("tokenbroker_token_requests_total")
                             .Help("GetAccessToken results: cache_hit, refreshed, stale (provider failing, cached "
                                   "token still valid) or error.")
                             .Register(*registry_);
  for (const char* result : {"cache_hit", "refreshed", "stale", "error"}) {
    token_requests_[result] = &token_requests.Add({{"result", result}});
  }
  auto& refreshes = prometheus::BuildCounter()
                        .Name("tokenbroker_refreshes_total")
                        .Help("Token requests to identity providers, by provider and outcome.")
                        .Register(*registry_);
  auto& refresh_latency = prometheus::BuildHistogram()
                              .Name("tokenbroker_refresh_duration_seconds")
                              .Help("Time of one token request to an identity provider.")
                              .Register(*registry_);
  for (const char* provider : {"microsoft", "google", "oidc"}) {
    for (const char* outcome :
         {"ok", "transient", "throttled", "invalid_grant", "invalid_client", "app_configuration"}) {
      refreshes_[absl::StrCat(provider, "/", outcome)] = &refreshes.Add({{"provider", provider}, {"outcome", outcome}});
    }
    refresh_latency_[provider] = &refresh_latency.Add({{"provider", provider}}, LatencyBuckets());
  }
}

prometheus::Counter& Metrics::TokenRequests(absl::string_view result) {
  auto it = token_requests_.find(result);
  return it == token_requests_.end() ? *token_requests_.at("error") : *it->second;
}

void Metrics::ObserveRefresh(absl::string_view provider, absl::string_view outcome, double seconds) {
  auto counter = refreshes_.find(absl::StrCat(provider, "/", outcome));
  if (counter != refreshes_.end()) counter->second->Increment();
  auto latency = refresh_latency_.find(provider);
  if (latency != refresh_latency_.end()) latency->second->Observe(seconds);
}

GrpcMethodMetrics& Metrics::ForGrpcMethod(absl::string_view path) {
  auto it = grpc_methods_.find(absl::StripPrefix(path, "/"));
  return it == grpc_methods_.end() ? *unknown_method_ : it->second;
}

}  // namespace tokenbroker
