// Per-caller token buckets, one per (rule, caller). Time comes from the
// injected clock. Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUTHZ_RATE_LIMITER_H_
#define TOKENBROKER_SERVICE_AUTHZ_RATE_LIMITER_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/authz/policy.h"
#include "service/common/clock.h"

namespace tokenbroker {

class RateLimiter {
 public:
  explicit RateLimiter(const Clock& clock) : clock_(clock) {}

  // Takes one token from the bucket of (`rule`, `caller`). Returns zero when
  // the call may go ahead, otherwise how long until a token is available.
  absl::Duration Take(const std::string& rule, absl::string_view caller, const RateLimitRule& limit);

  // Drops every bucket (the policy changed; its rules may be different).
  void Reset();

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  const Clock& clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUTHZ_RATE_LIMITER_H_
