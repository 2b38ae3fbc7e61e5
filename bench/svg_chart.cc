#include "bench/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "service/api/one_message_defaults.h"

namespace tokenbroker {
namespace {

constexpr double kWidth = 880, kHeight = 400;
constexpr double kLeft = 70, kRight = 250, kTop = 40, kBottom = 50;
constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
constexpr const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string Escape(const std::string& text) {
  return absl::StrReplaceAll(text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// A round step that gives about five ticks up to `max`.
double TickStep(double max) {
  const double raw = max / 5;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw) return m * magnitude;
  }
  return 10 * magnitude;
}

// Rounds `max` up to a whole tick; returns the tick step.
double RoundUpToTick(double* max) {
  const double step = TickStep(*max);
  *max = std::ceil(*max / step) * step;
  return step;
}

double PlotY(double y, double max_y) { return kTop + kPlotH - y / max_y * kPlotH; }

}  // namespace

const char* SvgFigure::Colour(size_t i) { return kColours[i % (sizeof kColours / sizeof kColours[0])]; }

std::string SvgFigure::RenderFrame(double max_y, double* scale_y) const {
  for (const auto& [name, y] : limits_) max_y = std::max(max_y, y);
  max_y = std::max(max_y, 1e-9) * 1.1;
  const double y_step = RoundUpToTick(&max_y);
  *scale_y = max_y;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%.0f\" y=\"22\" font-size=\"14\">%s</text>\n",
      kWidth, kHeight, kWidth, kHeight, kLeft, Escape(title_));
  for (double y = 0; y <= max_y + y_step / 2; y += y_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                          kLeft, PlotY(y, max_y), kLeft + kPlotW, PlotY(y, max_y), kLeft - 6, PlotY(y, max_y) + 4, y);
  }
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>"
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                        kLeft, kTop, kLeft, kTop + kPlotH, kLeft, kTop + kPlotH, kLeft + kPlotW, kTop + kPlotH);
  if (!x_label_.empty()) {
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", kLeft + kPlotW / 2,
                          kHeight - 10, Escape(x_label_));
  }
  absl::StrAppendFormat(&svg,
                        "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
                        kTop + kPlotH / 2, Escape(y_label_));
  return svg;
}

std::string SvgFigure::RenderLimits(double scale_y, size_t first_row) const {
  // Each limit its own dash pattern, named in the legend below the series.
  static constexpr const char* kDashes[] = {"6 4", "2 3", "10 3 2 3"};
  std::string svg;
  for (size_t i = 0; i < limits_.size(); ++i) {
    const auto& [name, y] = limits_[i];
    const char* dash = kDashes[i % (sizeof kDashes / sizeof kDashes[0])];
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" "
                          "stroke-dasharray=\"%s\"/>\n",
                          kLeft, PlotY(y, scale_y), kLeft + kPlotW, PlotY(y, scale_y), dash);
    svg += LegendEntry(first_row + i, name, "black", dash);
  }
  return svg;
}

std::string SvgFigure::LegendEntry(size_t row, const std::string& name, const char* colour, const char* dash) {
  const double y = kTop + 10 + 16 * static_cast<double>(row);
  return absl::StrFormat(
      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%s\"%s/>"
      "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
      kLeft + kPlotW + 12, y - 4, kLeft + kPlotW + 30, y - 4, colour, dash == nullptr ? "3" : "1",
      dash == nullptr ? "" : absl::StrCat(" stroke-dasharray=\"", dash, "\""), kLeft + kPlotW + 36, y, Escape(name));
}

absl::Status SvgFigure::WriteFile(const std::string& path) const {
  std::ofstream out(path, std::ios::trunc);
  out << Render();
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string SvgChart::Render() const {
  double max_x = 0, max_y = 0;
  for (const Series& s : series_) {
    for (const auto& [x, y] : s.points) {
      max_x = std::max(max_x, x);
      max_y = std::max(max_y, y);
    }
  }
  double scale_y = 1;
  std::string svg = RenderFrame(max_y, &scale_y);
  max_x = std::max(max_x, 1e-9);
  const double x_step = RoundUpToTick(&max_x);
  auto px = [&](double x) { return kLeft + x / max_x * kPlotW; };
  for (double x = 0; x <= max_x + x_step / 2; x += x_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                          px(x), kTop + kPlotH, px(x), kTop + kPlotH + 5, px(x), kTop + kPlotH + 18, x);
  }
  for (size_t i = 0; i < series_.size(); ++i) {
    std::string points;
    for (const auto& [x, y] : series_[i].points) absl::StrAppendFormat(&points, "%.1f,%.1f ", px(x), PlotY(y, scale_y));
    absl::StrAppendFormat(&svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n",
                          Colour(i), points);
    svg += LegendEntry(i, series_[i].name, Colour(i));
  }
  svg += RenderLimits(scale_y, series_.size());
  svg += "</svg>\n";
  return svg;
}

std::string SvgBarChart::Render() const {
  double max_y = 0;
  for (const Series& s : series_) {
    for (double v : s.values) max_y = std::max(max_y, v);
  }
  double scale_y = 1;
  std::string svg = RenderFrame(max_y, &scale_y);
  const double group_w = kPlotW / static_cast<double>(std::max<size_t>(groups_.size(), 1));
  const double bar_w = group_w * 0.8 / static_cast<double>(std::max<size_t>(series_.size(), 1));
  for (size_t g = 0; g < groups_.size(); ++g) {
    const double centre = kLeft + group_w * (static_cast<double>(g) + 0.5);
    // A group's name, one line per "\n".
    double line_y = kTop + kPlotH + 16;
    for (absl::string_view line : absl::StrSplit(groups_[g], '\n')) {
      absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n",
                            centre, line_y, Escape(std::string(line)));
      line_y += 13;
    }
    for (size_t s = 0; s < series_.size(); ++s) {
      if (g >= series_[s].values.size() || series_[s].values[g] < 0) continue;
      const double v = series_[s].values[g];
      const double x = centre - group_w * 0.4 + bar_w * static_cast<double>(s);
      absl::StrAppendFormat(&svg,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
                            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.3g</text>\n",
                            x, PlotY(v, scale_y), bar_w * 0.95, kTop + kPlotH - PlotY(v, scale_y), Colour(s),
                            x + bar_w * 0.475, PlotY(v, scale_y) - 3, v);
    }
  }
  for (size_t s = 0; s < series_.size(); ++s) svg += LegendEntry(s, series_[s].name, Colour(s));
  svg += RenderLimits(scale_y, series_.size());
  svg += "</svg>\n";
  return svg;
}

BenchFlags ParseBenchFlags(int argc, char** argv) {
  BenchFlags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      flags.quick = true;
    } else if (absl::StartsWith(arg, "--svg=")) {
      flags.svg_dir = arg.substr(6);
    } else {
      flags.rest.push_back(arg);
    }
  }
  return flags;
}

std::string OneMessageThreads::MailConfig() const {
  std::string lines;
  if (threads.has_value()) absl::StrAppend(&lines, "  get_message_threads: ", *threads, "\n");
  if (fetch_threads.has_value()) absl::StrAppend(&lines, "  fetch_message_threads: ", *fetch_threads, "\n");
  if (poll.has_value()) absl::StrAppend(&lines, "  get_message_threads_poll: ", *poll ? "true" : "false", "\n");
  return lines;
}

uint32_t OneMessageThreads::GetThreads() const { return threads.value_or(kDefaultGetMessageThreads); }
uint32_t OneMessageThreads::FetchThreads() const { return fetch_threads.value_or(kDefaultFetchMessageThreads); }
bool OneMessageThreads::Poll() const { return poll.value_or(kDefaultGetMessageThreadsPoll); }

std::string OneMessageThreads::Describe() const {
  const uint32_t get = GetThreads();
  const uint32_t fetch = FetchThreads();
  const absl::string_view kind = Poll() ? "that poll" : "that do not poll";
  if (get == 0 && fetch == 0) return "GetMessage and FetchMessage on the stream workers";
  if (get == fetch) return absl::StrCat("GetMessage and FetchMessage on ", get, " threads each of their own ", kind);
  auto one = [&](absl::string_view method, uint32_t n) {
    return n == 0 ? absl::StrCat(method, " on the stream workers")
                  : absl::StrCat(method, " on ", n, " threads of its own ", kind);
  };
  return absl::StrCat(one("GetMessage", get), ", ", one("FetchMessage", fetch));
}

std::string OneMessageThreads::ChartSuffix() const {
  const uint32_t get = GetThreads();
  const uint32_t fetch = FetchThreads();
  if (get == 0 && fetch == 0) return "-stream-workers";
  std::string suffix;
  if (get == 0) suffix += "-get-message-stream-workers";
  if (fetch == 0) suffix += "-fetch-message-stream-workers";
  if (Poll()) suffix += "-polling-threads";
  return suffix;
}

absl::Status OneMessageThreads::Check() const {
  if (poll.has_value() && GetThreads() == 0 && FetchThreads() == 0) {
    return absl::InvalidArgumentError(
        "--get-message-threads-poll needs threads of their own (GetMessage's or FetchMessage's; here both are on "
        "the stream workers)");
  }
  return absl::OkStatus();
}

std::optional<absl::Status> OneMessageThreadsFlag(const std::string& arg, OneMessageThreads& threads) {
  static constexpr absl::string_view kGetThreads = "--get-message-threads=";
  static constexpr absl::string_view kFetchThreads = "--fetch-message-threads=";
  static constexpr absl::string_view kPoll = "--get-message-threads-poll=";
  for (auto [flag, count] :
       {std::pair{kGetThreads, &threads.threads}, std::pair{kFetchThreads, &threads.fetch_threads}}) {
    if (!absl::StartsWith(arg, flag)) continue;
    int n = 0;
    if (!absl::SimpleAtoi(absl::string_view(arg).substr(flag.size()), &n) || n < 0 || n > 64) {
      return absl::InvalidArgumentError(absl::StrCat(flag.substr(0, flag.size() - 1), " takes 0-64"));
    }
    *count = static_cast<uint32_t>(n);
    return absl::OkStatus();
  }
  if (absl::StartsWith(arg, kPoll)) {
    const absl::string_view value = absl::string_view(arg).substr(kPoll.size());
    if (value != "true" && value != "false") {
      return absl::InvalidArgumentError("--get-message-threads-poll takes true or false");
    }
    threads.poll = value == "true";
    return absl::OkStatus();
  }
  return std::nullopt;
}

}  // namespace tokenbroker
