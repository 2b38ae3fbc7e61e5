// SvgChart: a small line chart written as SVG, so that a benchmark can draw
// what it measured (docs/benchmarks.md shows the charts). Series of (x, y)
// points, optional horizontal limit lines, linear axes from zero.
#ifndef TOKENBROKER_BENCH_SVG_CHART_H_
#define TOKENBROKER_BENCH_SVG_CHART_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tokenbroker {

class SvgChart {
 public:
  SvgChart(std::string title, std::string x_label, std::string y_label)
      : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}

  void AddSeries(std::string name, std::vector<std::pair<double, double>> points) {
    series_.push_back({std::move(name), std::move(points)});
  }
  // A dashed horizontal line at `y` (a target or a configured limit).
  void AddLimit(std::string name, double y) { limits_.push_back({std::move(name), y}); }

  std::string Render() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Series {
    std::string name;
    std::vector<std::pair<double, double>> points;
  };
  std::string title_, x_label_, y_label_;
  std::vector<Series> series_;
  std::vector<std::pair<std::string, double>> limits_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_BENCH_SVG_CHART_H_
