#include "service/metrics/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace tokenbroker {
namespace {

prometheus::MetricFamily Family(const std::string& name, const std::string& help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

ProcessCollector::ProcessCollector(std::string proc_dir, std::string proc_root)
    : proc_dir_(std::move(proc_dir)), proc_root_(std::move(proc_root)) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));

  // /proc/PID/stat: the command name (field 2) may contain spaces and ')', so
  // parse from the last ')'.
  std::string stat = ReadAll(proc_dir_ + "/stat");
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::vector<std::string> f;
    std::string token;
    while (fields >> token) f.push_back(token);
    // After the command: f[0] is field 3 (state); utime is field 14, stime 15,
    // starttime 22, vsize 23, rss 24.
    if (f.size() > 21) {
      const double utime = std::stod(f[11]);
      const double stime = std::stod(f[12]);
      const double start_ticks = std::stod(f[19]);
      const double vsize = std::stod(f[20]);
      const double rss_pages = std::stod(f[21]);
      out.push_back(Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                           prometheus::MetricType::Counter, (utime + stime) / ticks));
      out.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                           prometheus::MetricType::Gauge, vsize));
      out.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                           prometheus::MetricType::Gauge, rss_pages * page));
      std::istringstream proc_stat(ReadAll(proc_root_ + "/stat"));
      std::string line;
      while (std::getline(proc_stat, line)) {
        if (line.rfind("btime ", 0) == 0) {
          const double boot = std::stod(line.substr(6));
          out.push_back(Family("process_start_time_seconds",
                               "Start time of the process since unix epoch in seconds.",
                               prometheus::MetricType::Gauge, boot + start_ticks / ticks));
        }
      }
    }
  }

  if (DIR* dir = opendir((proc_dir_ + "/fd").c_str())) {
    double fds = 0;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(dir);
    out.push_back(Family("process_open_fds", "Number of open file descriptors.", prometheus::MetricType::Gauge,
                         proc_dir_ == "/proc/self" ? fds - 1 : fds));  // minus the one opendir holds
  }
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                         prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return out;
}

}  // namespace tokenbroker
