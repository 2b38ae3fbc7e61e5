// gRPC's own log lines (handshake failures, transport errors) as JSON lines
// through the broker's Logger, like every other line it writes: "msg":"grpc",
// with gRPC's message and its source file and line. gRPC's ERROR is logged at
// warn (a refused client certificate is a caller's problem, not the broker's).
#ifndef TOKENBROKER_SERVICE_APP_GRPC_LOG_H_
#define TOKENBROKER_SERVICE_APP_GRPC_LOG_H_

#include "service/logging/logger.h"

namespace tokenbroker {

// From now on gRPC logs through `logger`, which must live as long as the
// process may log (main's logger).
void SendGrpcLogsTo(Logger& logger);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_APP_GRPC_LOG_H_
