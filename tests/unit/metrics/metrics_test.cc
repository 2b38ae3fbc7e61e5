#include "service/metrics/metrics.h"

#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "service/metrics/process_collector.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const prometheus::Collectable& collectable) {
  return prometheus::TextSerializer().Serialize(collectable.Collect());
}

TEST(MetricsTest, BuildInfoCarriesVersionAndRevision) {
  Metrics metrics({"1.2.3", "abc123"}, {});
  EXPECT_THAT(Scrape(*metrics.registry()), HasSubstr("tokenbroker_build_info{revision=\"abc123\",version=\"1.2.3\"} 1"));
}

TEST(MetricsTest, EveryServedMethodHasACounterPerCodeFromTheStart) {
  Metrics metrics({"v", "r"}, {"/tokenbroker.v1.TokenService/GetAccessToken"});
  const std::string text = Scrape(*metrics.registry());
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"OK\",method=\"tokenbroker.v1.TokenService/"
                              "GetAccessToken\"} 0"));
  EXPECT_THAT(text, HasSubstr("tokenbroker_grpc_requests_total{code=\"UNAUTHENTICATED\",method=\"tokenbroker.v1."
                              "TokenService/GetAccessToken\"} 0"));
}

TEST(MetricsTest, UnknownMethodsShareOneLabel) {
  Metrics metrics({"v", "r"}, {"tokenbroker.v1.TokenService/GetAccessToken"});
  metrics.ForGrpcMethod("/tokenbroker.v1.TokenService/GetAccessToken").requests[0]->Increment();
  metrics.ForGrpcMethod("/attacker.Chosen/Name1").requests[12]->Increment();
  metrics.ForGrpcMethod("/attacker.Chosen/Name2").requests[12]->Increment();
  const std::string text = Scrape(*metrics.registry());
  EXPECT_THAT(text, HasSubstr("{code=\"OK\",method=\"tokenbroker.v1.TokenService/GetAccessToken\"} 1"));
  EXPECT_THAT(text, HasSubstr("{code=\"UNIMPLEMENTED\",method=\"unknown\"} 2"));
  EXPECT_THAT(text, Not(HasSubstr("attacker")));
}

TEST(MetricsTest, CodeNames) {
  EXPECT_EQ(GrpcCodeName(0), "OK");
  EXPECT_EQ(GrpcCodeName(9), "FAILED_PRECONDITION");
  EXPECT_EQ(GrpcCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcCodeName(99), "UNKNOWN");
}

TEST(ProcessCollectorTest, ReportsThisProcess) {
  ProcessCollector collector;
  std::map<std::string, double> values;
  for (const auto& family : collector.Collect()) {
    ASSERT_EQ(family.metric.size(), 1u) << family.name;
    values[family.name] = family.type == prometheus::MetricType::Counter ? family.metric[0].counter.value
                                                                         : family.metric[0].gauge.value;
  }
  ASSERT_EQ(values.size(), 6u);
  EXPECT_GT(values["process_resident_memory_bytes"], 1e6);
  EXPECT_GE(values["process_virtual_memory_bytes"], values["process_resident_memory_bytes"]);
  EXPECT_GE(values["process_open_fds"], 3);
  EXPECT_GT(values["process_max_fds"], values["process_open_fds"]);
  EXPECT_GE(values["process_cpu_seconds_total"], 0);
  // Started within the last hour and not in the future.
  const double now = static_cast<double>(time(nullptr));
  EXPECT_LE(values["process_start_time_seconds"], now + 2);
  EXPECT_GT(values["process_start_time_seconds"], now - 3600);
}

}  // namespace
}  // namespace tokenbroker
