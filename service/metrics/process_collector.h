// The standard Prometheus process metrics (process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds), read from
// /proc at scrape time. prometheus-cpp has no such collector. Thread-safe.
#ifndef TOKENBROKER_SERVICE_METRICS_PROCESS_COLLECTOR_H_
#define TOKENBROKER_SERVICE_METRICS_PROCESS_COLLECTOR_H_

#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace tokenbroker {

class ProcessCollector final : public prometheus::Collectable {
 public:
  // `proc_dir` is the /proc directory of the process to describe.
  explicit ProcessCollector(std::string proc_dir = "/proc/self", std::string proc_root = "/proc");
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string proc_dir_;
  std::string proc_root_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_METRICS_PROCESS_COLLECTOR_H_
