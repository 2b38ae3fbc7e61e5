// RETURN_IF_ERROR and ASSIGN_OR_RETURN, which Debian's Abseil (20220623) lacks.
#ifndef TOKENBROKER_SERVICE_COMMON_STATUS_MACROS_H_
#define TOKENBROKER_SERVICE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TB_CONCAT_INNER_(a, b) a##b
#define TB_CONCAT_(a, b) TB_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status tb_status_ = (expr);                  \
    if (!tb_status_.ok()) return tb_status_;             \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from an OK StatusOr or
// returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  TB_ASSIGN_OR_RETURN_IMPL_(TB_CONCAT_(tb_statusor_, __LINE__), lhs, expr)
#define TB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()

#endif  // TOKENBROKER_SERVICE_COMMON_STATUS_MACROS_H_
