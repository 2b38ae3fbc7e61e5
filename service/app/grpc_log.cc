#include "service/app/grpc_log.h"

#include <grpc/support/log.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

std::atomic<Logger*> grpc_logger{nullptr};

void LogFromGrpc(gpr_log_func_args* args) {
  Logger* logger = grpc_logger.load();
  if (logger == nullptr || args == nullptr) return;
  LogLevel level = LogLevel::kInfo;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      level = LogLevel::kDebug;
      break;
    case GPR_LOG_SEVERITY_INFO:
      level = LogLevel::kInfo;
      break;
    case GPR_LOG_SEVERITY_ERROR:
      level = LogLevel::kWarn;
      break;
  }
  std::string file = args->file != nullptr ? args->file : "";
  if (const size_t slash = file.rfind('/'); slash != std::string::npos) file.erase(0, slash + 1);
  logger->Log(level, "grpc",
              {{"message", args->message != nullptr ? args->message : ""}, {"source", absl::StrCat(file, ":", args->line)}});
}

}  // namespace

void SendGrpcLogsTo(Logger& logger) {
  grpc_logger.store(&logger);
  gpr_set_log_function(LogFromGrpc);
}

}  // namespace tokenbroker
