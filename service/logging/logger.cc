#include "service/logging/logger.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tokenbroker {

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", name, "\"; expected debug, info, warn or error"));
}

LogField::LogField(absl::string_view key, const absl::Status& status)
    : key_(key), value_(status.ok() ? std::string("OK") : std::string(status.ToString())) {}

LogField::LogField(absl::string_view key, absl::Duration d)
    : key_(key), value_(absl::ToDoubleSeconds(d)) {}

LogField::LogField(absl::string_view key, absl::Time t)
    : key_(key), value_(absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone())) {}

Logger::Logger(LogLevel level, Sink sink, const Clock& clock) : level_(level), sink_(std::move(sink)), clock_(clock) {
  if (!sink_) {
    sink_ = [](absl::string_view line) {
      fwrite(line.data(), 1, line.size(), stderr);
      fflush(stderr);
    };
  }
}

void Logger::SetLevel(LogLevel level) {
  absl::MutexLock lock(&mu_);
  level_ = level;
}

LogLevel Logger::level() const {
  absl::MutexLock lock(&mu_);
  return level_;
}

std::string Logger::Format(LogLevel level, absl::string_view message,
                           std::initializer_list<LogField> fields) const {
  std::string line = "{\"time\":\"";
  line += absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", clock_.Now(), absl::UTCTimeZone());
  line += "\",\"level\":\"";
  absl::StrAppend(&line, LogLevelName(level));
  line += "\",\"msg\":\"";
  AppendJsonEscaped(line, message);
  line += '"';
  for (const LogField& f : fields) {
    line += ",\"";
    AppendJsonEscaped(line, f.key());
    line += "\":";
    std::visit(
        [&line](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            line += '"';
            AppendJsonEscaped(line, v);
            line += '"';
          } else if constexpr (std::is_same_v<T, bool>) {
            line += v ? "true" : "false";
          } else if constexpr (std::is_same_v<T, double>) {
            if (std::isfinite(v)) {
              absl::StrAppendFormat(&line, "%.6g", v);
            } else {
              line += "null";
            }
          } else {
            absl::StrAppend(&line, v);
          }
        },
        f.value());
  }
  line += "}\n";
  return line;
}

void Logger::WriteLines(absl::string_view lines) {
  if (lines.empty()) return;
  absl::MutexLock lock(&mu_);
  sink_(lines);
}

void Logger::Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  if (!Enabled(level)) return;
  std::string line = Format(level, message, fields);
  absl::MutexLock lock(&mu_);
  sink_(line);
}

}  // namespace tokenbroker
