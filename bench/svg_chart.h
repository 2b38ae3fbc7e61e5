// Charts a benchmark writes as SVG, so that it can draw what it measured
// (docs/benchmarks.md shows them): SvgChart, lines of (x, y) points on linear
// axes from zero; SvgBarChart, groups of bars (one bar per series in each
// group) with their values written on them. Both take optional horizontal
// limit lines (a target or a configured limit).
#ifndef TOKENBROKER_BENCH_SVG_CHART_H_
#define TOKENBROKER_BENCH_SVG_CHART_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tokenbroker {

class SvgFigure {
 public:
  SvgFigure(std::string title, std::string x_label, std::string y_label)
      : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}
  virtual ~SvgFigure() = default;

  // A horizontal line at `y`, dashed (each limit its own pattern) and named
  // in the legend.
  void AddLimit(std::string name, double y) { limits_.push_back({std::move(name), y}); }

  virtual std::string Render() const = 0;
  absl::Status WriteFile(const std::string& path) const;

 protected:
  // The frame, the title, the axes' labels and the y grid, scaled to hold
  // `max_y` and every limit; the x axis's ticks are the caller's. Returns
  // the SVG so far and sets *scale_y to the y axis's top value.
  std::string RenderFrame(double max_y, double* scale_y) const;
  // The limit lines, drawn over the data, and their legend entries from
  // legend row `first_row` on.
  std::string RenderLimits(double scale_y, size_t first_row) const;
  // The legend entry in row `row`: a sample line (dashed when `dash` is
  // given) and the name.
  static std::string LegendEntry(size_t row, const std::string& name, const char* colour, const char* dash = nullptr);
  static const char* Colour(size_t i);

 private:
  std::string title_, x_label_, y_label_;
  std::vector<std::pair<std::string, double>> limits_;
};

class SvgChart : public SvgFigure {
 public:
  using SvgFigure::SvgFigure;
  void AddSeries(std::string name, std::vector<std::pair<double, double>> points) {
    series_.push_back({std::move(name), std::move(points)});
  }
  std::string Render() const override;

 private:
  struct Series {
    std::string name;
    std::vector<std::pair<double, double>> points;
  };
  std::vector<Series> series_;
};

class SvgBarChart : public SvgFigure {
 public:
  // `groups` name the bar groups along the x axis, left to right.
  SvgBarChart(std::string title, std::vector<std::string> groups, std::string y_label)
      : SvgFigure(std::move(title), "", std::move(y_label)), groups_(std::move(groups)) {}
  // One value per group (a negative value draws no bar there).
  void AddSeries(std::string name, std::vector<double> values) {
    series_.push_back({std::move(name), std::move(values)});
  }
  std::string Render() const override;

 private:
  struct Series {
    std::string name;
    std::vector<double> values;
  };
  std::vector<std::string> groups_;
  std::vector<Series> series_;
};

// The flags every benchmark takes: --quick (a short run) and --svg=DIR (write
// its charts into DIR); anything else is left in `rest` for the benchmark.
struct BenchFlags {
  bool quick = false;
  std::string svg_dir;
  std::vector<std::string> rest;
};
BenchFlags ParseBenchFlags(int argc, char** argv);

// How the benchmarks that run tokenbrokerd configure the threads of its
// one-message methods: `--get-message-threads=N` and
// `--fetch-message-threads=N` (mail.get_message_threads and
// mail.fetch_message_threads, 0-64: 0 puts the method on the stream workers)
// and `--get-message-threads-poll=true|false` (mail.get_message_threads_poll,
// both methods' threads); unset, the broker's defaults (GetMessage and
// FetchMessage on 8 threads each that do not poll).
struct OneMessageThreads {
  std::optional<uint32_t> threads;  // GetMessage's
  std::optional<uint32_t> fetch_threads;
  std::optional<bool> poll;
  // As the broker runs them: given, or its defaults.
  uint32_t GetThreads() const;
  uint32_t FetchThreads() const;
  bool Poll() const;
  // The lines under `mail:` in the broker's configuration (none for the
  // defaults).
  std::string MailConfig() const;
  // "GetMessage and FetchMessage on 8 threads each of their own that do not
  // poll" (the defaults), "GetMessage on 8 threads of its own that poll,
  // FetchMessage on the stream workers", "GetMessage and FetchMessage on the
  // stream workers", ...
  std::string Describe() const;
  // For chart names, against the defaults: "" (as by default),
  // "-stream-workers" (both methods), "-fetch-message-stream-workers",
  // "-get-message-stream-workers", "-polling-threads", or a combination.
  std::string ChartSuffix() const;
  // INVALID_ARGUMENT when poll is given and neither method has threads.
  absl::Status Check() const;
};
// Reads `arg` into `threads` if it is one of those flags: nullopt when it is
// another flag, else OK or what is wrong with it.
std::optional<absl::Status> OneMessageThreadsFlag(const std::string& arg, OneMessageThreads& threads);

}  // namespace tokenbroker

#endif  // TOKENBROKER_BENCH_SVG_CHART_H_
