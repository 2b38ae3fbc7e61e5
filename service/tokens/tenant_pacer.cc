#include "service/tokens/tenant_pacer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tokenbroker {

absl::Status TenantPacer::Wait(const std::string& tenant, absl::Time* retry_at) {
  auto own = options_.tenant_rates.find(tenant);
  const double rate = own != options_.tenant_rates.end() ? own->second : options_.requests_per_second;
  const bool paced = rate > 0;
  const absl::Duration interval = paced ? absl::Seconds(1) / rate : absl::ZeroDuration();
  // One second's worth may go at once (for a tenant slower than one a
  // second, one request).
  const absl::Duration tolerance = paced ? std::max(absl::ZeroDuration(), absl::Seconds(1) - interval)
                                         : absl::ZeroDuration();
  absl::Time send_at;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    Pace& pace = tenants_[tenant];
    send_at = std::max({now, pace.next - tolerance, pace.paused_until});
    if (send_at - now > options_.max_wait) {
      *retry_at = send_at;
      refused = absl::UnavailableError(absl::StrCat(pace.paused_until > now
                                                        ? "the identity provider is throttling "
                                                        : "too many token requests are waiting for ",
                                                    "tenant \"", tenant, "\" (no request was made)"));
    } else {
      pace.next = std::max({pace.next, now, pace.paused_until}) + interval;
    }
  }
  if (!refused.ok()) {
    if (options_.on_pacing) options_.on_pacing("throttled");
    return refused;
  }
  if (send_at > clock_.Now()) {
    if (options_.on_pacing) options_.on_pacing("paced");
    clock_.SleepUntil(send_at);
  }
  return absl::OkStatus();
}

void TenantPacer::Throttled(const std::string& tenant, absl::Duration retry_after) {
  absl::MutexLock lock(&mu_);
  Pace& pace = tenants_[tenant];
  const absl::Duration pause = retry_after > absl::ZeroDuration() ? retry_after : options_.default_pause;
  pace.paused_until = std::max(pace.paused_until, clock_.Now() + pause);
}

std::string PacingKey(absl::string_view provider, absl::string_view tenant, absl::string_view app_id) {
  return tenant.empty() ? absl::StrCat(provider, "/app:", app_id) : absl::StrCat(provider, "/", tenant);
}

}  // namespace tokenbroker
