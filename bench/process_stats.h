// What /proc says about a process, for the benchmarks' CPU tables.
#ifndef TOKENBROKER_BENCH_PROCESS_STATS_H_
#define TOKENBROKER_BENCH_PROCESS_STATS_H_

#include <sys/types.h>

#include <string>

namespace tokenbroker {

// The CPU time (user + system, in seconds) of the process whose
// /proc/<pid>/stat is at `stat_path`, and its parent; 0 when it is gone.
double ProcessCpu(const std::string& stat_path, pid_t* parent = nullptr);

}  // namespace tokenbroker

#endif  // TOKENBROKER_BENCH_PROCESS_STATS_H_
