#include "bench/process_stats.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace tokenbroker {

double ProcessCpu(const std::string& stat_path, pid_t* parent) {
  std::ifstream in(stat_path);
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command (in parentheses) may hold spaces: the fields follow the last ")".
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size()) return 0;
  // Fields from the third: state, ppid (4th), ..., utime (14th), stime (15th).
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  uint64_t utime = 0, stime = 0;
  int ppid = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[1], &ppid) || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  if (parent != nullptr) *parent = ppid;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace tokenbroker
