#include "service/logging/logger.h"

#include <type_traits>
#include <vector>

#include "gtest/gtest.h"

namespace tokenbroker {
namespace {

// The redaction layer is a compile-time property: a Secret cannot be a field.
static_assert(!std::is_constructible_v<LogField, absl::string_view, const Secret&>);
static_assert(!std::is_constructible_v<LogField, absl::string_view, Secret>);

struct Captured {
  std::vector<std::string> lines;
  Logger::Sink sink() {
    return [this](absl::string_view line) { lines.emplace_back(line); };
  }
};

TEST(LoggerTest, WritesOneJsonObjectPerLine) {
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  Captured out;
  Logger logger(LogLevel::kInfo, out.sink(), clock);
  logger.Info("serving", {{"grpc_address", "127.0.0.1:50051"}, {"port", 50051}, {"ready", true}});
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0],
            "{\"time\":\"2027-01-15T08:00:00.000Z\",\"level\":\"info\",\"msg\":\"serving\","
            "\"grpc_address\":\"127.0.0.1:50051\",\"port\":50051,\"ready\":true}\n");
}

TEST(LoggerTest, DropsLinesBelowTheLevel) {
  Captured out;
  Logger logger(LogLevel::kWarn, out.sink());
  logger.Info("hidden");
  logger.Debug("hidden");
  logger.Warn("shown");
  logger.Error("shown");
  EXPECT_EQ(out.lines.size(), 2u);
  logger.SetLevel(LogLevel::kDebug);
  logger.Debug("now shown");
  EXPECT_EQ(out.lines.size(), 3u);
}

TEST(LoggerTest, EscapesControlCharactersQuotesAndBadUtf8) {
  std::string out;
  AppendJsonEscaped(out, "a\"b\\c\nd\x01 \xC3\xA9 \xFF");
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd\\u0001 \xC3\xA9 \xEF\xBF\xBD");
}

TEST(LoggerTest, AForgedLineBreakCannotStartANewRecord) {
  Captured out;
  Logger logger(LogLevel::kInfo, out.sink());
  logger.Info("x", {{"user", "bob\n{\"level\":\"error\"}"}});
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_EQ(out.lines[0].find('\n'), out.lines[0].size() - 1);
}

TEST(LoggerTest, StatusAndDurationFields) {
  Captured out;
  Logger logger(LogLevel::kInfo, out.sink());
  logger.Error("failed", {{"error", absl::NotFoundError("no grant g1")}, {"took", absl::Milliseconds(1500)}});
  ASSERT_EQ(out.lines.size(), 1u);
  EXPECT_NE(out.lines[0].find("\"error\":\"NOT_FOUND: no grant g1\""), std::string::npos);
  EXPECT_NE(out.lines[0].find("\"took\":1.5"), std::string::npos);
}

TEST(LogLevelTest, ParsesNames) {
  EXPECT_EQ(*ParseLogLevel("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarn);
  EXPECT_EQ(ParseLogLevel("verbose").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenbroker
