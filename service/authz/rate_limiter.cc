#include "service/authz/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tokenbroker {

absl::Duration RateLimiter::Take(const std::string& rule, absl::string_view caller, const RateLimitRule& limit) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  // A caller cannot grow this map beyond the identities the resolver accepts.
  auto [it, inserted] = buckets_.try_emplace(absl::StrCat(rule, "\n", caller));
  Bucket& bucket = it->second;
  if (inserted) {
    bucket.tokens = limit.burst;
  } else {
    const double refill =
        absl::ToDoubleSeconds(std::max(absl::ZeroDuration(), now - bucket.updated)) * limit.per_second;
    bucket.tokens = std::min(limit.burst, bucket.tokens + refill);
  }
  bucket.updated = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return absl::ZeroDuration();
  }
  return absl::Seconds((1 - bucket.tokens) / limit.per_second);
}

void RateLimiter::Reset() {
  absl::MutexLock lock(&mu_);
  buckets_.clear();
}

}  // namespace tokenbroker
