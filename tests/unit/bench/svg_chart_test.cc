#include "bench/svg_chart.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST(SvgBarChartTest, DrawsABarWithItsValueForEveryValueGivenAndNamesEveryGroup) {
  SvgBarChart chart("Ratios <by part>", {"one\ncaller", "four callers", "batch"}, "ratio");
  chart.AddSeries("broker / direct", {0.36, 0.45, 0.97});
  chart.AddSeries("floor", {0.62, -1, -1});  // a negative value: no bar
  chart.AddLimit("target 0.90", 0.9);
  const std::string svg = chart.Render();
  EXPECT_TRUE(absl::StartsWith(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_TRUE(absl::EndsWith(svg, "</svg>\n"));
  // The background plus four bars.
  EXPECT_EQ(Count(svg, "<rect "), 5);
  for (const char* value : {">0.36<", ">0.45<", ">0.97<", ">0.62<"})
    EXPECT_TRUE(absl::StrContains(svg, value)) << value;
  // A group name of two lines is two text lines.
  EXPECT_TRUE(absl::StrContains(svg, ">one</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">caller</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">four callers</text>"));
  EXPECT_TRUE(absl::StrContains(svg, "Ratios &lt;by part&gt;"));
  EXPECT_TRUE(absl::StrContains(svg, ">target 0.90</text>"));
  // A limit is drawn over the bars, so that no bar hides it, and named in
  // the legend with its dash pattern.
  EXPECT_GT(svg.find("stroke-dasharray=\"6 4\""), svg.rfind("<rect "));
  EXPECT_EQ(Count(svg, "stroke-dasharray=\"6 4\""), 2);
  EXPECT_TRUE(absl::StrContains(svg, ">broker / direct</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">floor</text>"));
}

TEST(SvgBarChartTest, TallerValuesDrawTallerBars) {
  SvgBarChart chart("t", {"a", "b"}, "y");
  chart.AddSeries("s", {1, 3});
  const std::string svg = chart.Render();
  std::vector<double> heights;
  for (absl::string_view piece : absl::StrSplit(svg, "<rect ")) {
    const size_t at = piece.find("height=\"");
    if (!absl::StartsWith(piece, "x=") || at == absl::string_view::npos) continue;
    heights.push_back(std::stod(std::string(piece.substr(at + 8))));
  }
  ASSERT_EQ(heights.size(), 2u);
  EXPECT_NEAR(heights[1] / heights[0], 3.0, 0.01);
}

TEST(SvgChartTest, DrawsOneLinePerSeriesThroughItsPoints) {
  SvgChart chart("Memory", "seconds", "MB");
  chart.AddSeries("tokenbrokerd", {{0, 30}, {1, 40}, {2, 35}});
  chart.AddSeries("other", {{0, 10}});
  chart.AddLimit("before + 64 MB", 94);
  const std::string svg = chart.Render();
  EXPECT_EQ(Count(svg, "<polyline "), 2);
  EXPECT_TRUE(absl::StrContains(svg, ">tokenbrokerd</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">before + 64 MB</text>"));
  EXPECT_TRUE(absl::StrContains(svg, ">seconds</text>"));
}

TEST(SvgChartTest, WriteFileWritesTheChartAndSaysWhenItCannot) {
  testing::TempDir dir;
  SvgChart chart("t", "x", "y");
  chart.AddSeries("s", {{0, 1}, {1, 2}});
  ASSERT_TRUE(chart.WriteFile(dir.File("c.svg")).ok());
  std::ifstream in(dir.File("c.svg"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), chart.Render());
  const absl::Status missing = chart.WriteFile(dir.File("no/such/folder/c.svg"));
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.message(), "no/such/folder/c.svg"));
}

TEST(BenchFlagsTest, TakesQuickAndSvgAndLeavesTheRest) {
  const char* argv[] = {"bench", "--quick", "--store=sqlite", "--svg=/tmp/charts", "--only=small"};
  const BenchFlags flags = ParseBenchFlags(5, const_cast<char**>(argv));
  EXPECT_TRUE(flags.quick);
  EXPECT_EQ(flags.svg_dir, "/tmp/charts");
  EXPECT_EQ(flags.rest, (std::vector<std::string>{"--store=sqlite", "--only=small"}));
  const char* none[] = {"bench"};
  const BenchFlags defaults = ParseBenchFlags(1, const_cast<char**>(none));
  EXPECT_FALSE(defaults.quick);
  EXPECT_TRUE(defaults.svg_dir.empty());
  EXPECT_TRUE(defaults.rest.empty());
}

TEST(BenchFlagsTest, OneMessageThreadsTakeZeroToSixtyFourAndWhetherTheyPoll) {
  OneMessageThreads threads;
  EXPECT_EQ(OneMessageThreadsFlag("--only=small", threads), std::nullopt);
  // No flag: the broker's defaults, nothing in its configuration.
  EXPECT_EQ(threads.MailConfig(), "");
  EXPECT_EQ(threads.Describe(), "GetMessage and FetchMessage on 8 threads each of their own that do not poll");
  EXPECT_EQ(threads.ChartSuffix(), "");
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads-poll=true", threads), absl::OkStatus());
  EXPECT_EQ(threads.MailConfig(), "  get_message_threads_poll: true\n");
  EXPECT_EQ(threads.Describe(), "GetMessage and FetchMessage on 8 threads each of their own that poll");
  EXPECT_EQ(threads.ChartSuffix(), "-polling-threads");
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=0", threads), absl::OkStatus());
  EXPECT_EQ(threads.MailConfig(), "  fetch_message_threads: 0\n  get_message_threads_poll: true\n");
  EXPECT_EQ(threads.Describe(), "GetMessage on 8 threads of its own that poll, FetchMessage on the stream workers");
  EXPECT_EQ(threads.ChartSuffix(), "-fetch-message-stream-workers-polling-threads");
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads=4", threads), absl::OkStatus());
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=6", threads), absl::OkStatus());
  EXPECT_EQ(threads.MailConfig(),
            "  get_message_threads: 4\n  fetch_message_threads: 6\n  get_message_threads_poll: true\n");
  EXPECT_EQ(threads.Describe(),
            "GetMessage on 4 threads of its own that poll, FetchMessage on 6 threads of its own that poll");
  EXPECT_TRUE(threads.Check().ok());
  // GetMessage on the stream workers: FetchMessage's threads still poll.
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads=0", threads), absl::OkStatus());
  EXPECT_TRUE(threads.Check().ok());
  EXPECT_EQ(threads.ChartSuffix(), "-get-message-stream-workers-polling-threads");
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=0", threads), absl::OkStatus());
  EXPECT_EQ(threads.Check().message(),
            "--get-message-threads-poll needs threads of their own (GetMessage's or FetchMessage's; here both are "
            "on the stream workers)");
  OneMessageThreads workers;
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads=0", workers), absl::OkStatus());
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=0", workers), absl::OkStatus());
  EXPECT_EQ(workers.MailConfig(), "  get_message_threads: 0\n  fetch_message_threads: 0\n");
  EXPECT_EQ(workers.Describe(), "GetMessage and FetchMessage on the stream workers");
  EXPECT_EQ(workers.ChartSuffix(), "-stream-workers");
  EXPECT_TRUE(workers.Check().ok());
  OneMessageThreads fetch_workers;
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=0", fetch_workers), absl::OkStatus());
  EXPECT_EQ(fetch_workers.Describe(),
            "GetMessage on 8 threads of its own that do not poll, FetchMessage on the stream workers");
  EXPECT_EQ(fetch_workers.ChartSuffix(), "-fetch-message-stream-workers");
  OneMessageThreads get_workers;
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads=0", get_workers), absl::OkStatus());
  EXPECT_EQ(get_workers.Describe(),
            "GetMessage on the stream workers, FetchMessage on 8 threads of its own that do not poll");
  EXPECT_EQ(get_workers.ChartSuffix(), "-get-message-stream-workers");
  for (const char* bad : {"--get-message-threads=65", "--get-message-threads=x", "--get-message-threads=-1"}) {
    EXPECT_EQ(OneMessageThreadsFlag(bad, threads)->message(), "--get-message-threads takes 0-64") << bad;
  }
  EXPECT_EQ(OneMessageThreadsFlag("--fetch-message-threads=65", threads)->message(),
            "--fetch-message-threads takes 0-64");
  EXPECT_EQ(OneMessageThreadsFlag("--get-message-threads-poll=no", threads)->message(),
            "--get-message-threads-poll takes true or false");
}

}  // namespace
}  // namespace tokenbroker
