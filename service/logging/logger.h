// Structured logging: one JSON object per line, to stderr by default.
//
// Fields are typed key/value pairs. A Secret cannot be a field (the constructor
// is deleted), so a secret can only reach a log line through an explicit
// Reveal(), which review catches. Thread-safe.
#ifndef TOKENBROKER_SERVICE_LOGGING_LOGGER_H_
#define TOKENBROKER_SERVICE_LOGGING_LOGGER_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include "absl/strings/string_view.h"
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/common/json.h"
#include "service/common/secret.h"

namespace tokenbroker {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error".
absl::string_view LogLevelName(LogLevel level);
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

// One key/value pair of a log line.
class LogField {
 public:
  using Value = std::variant<std::string, int64_t, uint64_t, double, bool>;

  LogField(absl::string_view key, absl::string_view value) : key_(key), value_(std::string(value)) {}
  LogField(absl::string_view key, const char* value) : key_(key), value_(std::string(value)) {}
  LogField(absl::string_view key, const std::string& value) : key_(key), value_(value) {}
  LogField(absl::string_view key, int value) : key_(key), value_(int64_t{value}) {}
  LogField(absl::string_view key, long value) : key_(key), value_(int64_t{value}) {}
  LogField(absl::string_view key, long long value) : key_(key), value_(int64_t{value}) {}
  LogField(absl::string_view key, unsigned value) : key_(key), value_(uint64_t{value}) {}
  LogField(absl::string_view key, unsigned long value) : key_(key), value_(uint64_t{value}) {}
  LogField(absl::string_view key, unsigned long long value) : key_(key), value_(uint64_t{value}) {}
  LogField(absl::string_view key, double value) : key_(key), value_(value) {}
  LogField(absl::string_view key, bool value) : key_(key), value_(value) {}
  // Status messages are written by our own code and never carry secrets.
  LogField(absl::string_view key, const absl::Status& status);
  LogField(absl::string_view key, absl::Duration d);
  LogField(absl::string_view key, absl::Time t);
  // Secrets are never logged.
  LogField(absl::string_view key, const Secret& secret) = delete;

  const std::string& key() const { return key_; }
  const Value& value() const { return value_; }

 private:
  std::string key_;
  Value value_;
};

class Logger {
 public:
  // Lines go to `sink` (called with one complete line, newline included, under
  // the logger's lock). The default writes to stderr.
  using Sink = std::function<void(absl::string_view line)>;

  explicit Logger(LogLevel level = LogLevel::kInfo, Sink sink = nullptr,
                  const Clock& clock = SystemClock::Get());

  void SetLevel(LogLevel level);
  LogLevel level() const;
  bool Enabled(LogLevel level) const { return level >= this->level(); }

  void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields = {});
  void Debug(absl::string_view m, std::initializer_list<LogField> f = {}) { Log(LogLevel::kDebug, m, f); }
  void Info(absl::string_view m, std::initializer_list<LogField> f = {}) { Log(LogLevel::kInfo, m, f); }
  void Warn(absl::string_view m, std::initializer_list<LogField> f = {}) { Log(LogLevel::kWarn, m, f); }
  void Error(absl::string_view m, std::initializer_list<LogField> f = {}) { Log(LogLevel::kError, m, f); }

  // Writes complete lines made with Format at once (one write for many).
  void WriteLines(absl::string_view lines);

  // The JSON line (with newline) that Log would write.
  std::string Format(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) const;

 private:
  mutable absl::Mutex mu_;
  LogLevel level_ ABSL_GUARDED_BY(mu_);
  Sink sink_ ABSL_GUARDED_BY(mu_);
  const Clock& clock_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_LOGGING_LOGGER_H_
