#include "service/idp/provider.h"

namespace tokenbroker {

absl::string_view FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kTransient:
      return "transient";
    case FailureKind::kThrottled:
      return "throttled";
    case FailureKind::kNeedsReconsent:
      return "invalid_grant";
    case FailureKind::kInvalidClient:
      return "invalid_client";
    case FailureKind::kAppConfiguration:
      return "app_configuration";
  }
  return "transient";
}

}  // namespace tokenbroker
