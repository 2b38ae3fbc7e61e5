// TenantPacer: paces identity-provider requests per provider and tenant (the
// unit a token endpoint throttles), so that a cold start of many grants, or
// the scheduler finding many tokens due at once, does not burst one tenant's
// endpoint; and so that a tenant the provider throttles (HTTP 429, Microsoft's
// AADSTS90055) is left alone until its Retry-After while every other tenant
// goes on at its own pace.
//
// Each tenant gets `requests_per_second` (or its own rate from
// `tenant_rates`), with a burst of one second's worth
// (generic cell rate: a request may go at its tenant's theoretical arrival
// time less the burst tolerance). A request whose slot is further than
// `max_wait` away (its tenant is throttled, or its queue is that deep) is not
// made: it fails at once with UNAVAILABLE saying when to retry, and takes no
// slot. One pacer for the whole process, shared by callers' and background
// refreshes. Thread-safe; time from the injected clock.
#ifndef TOKENBROKER_SERVICE_TOKENS_TENANT_PACER_H_
#define TOKENBROKER_SERVICE_TOKENS_TENANT_PACER_H_

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"

namespace tokenbroker {

struct TenantPacerOptions {
  // Provider requests per second per tenant; 0 turns pacing off (a 429 still
  // pauses its tenant).
  double requests_per_second = 50;
  // Tenants with a rate of their own, by pacing key (PacingKey below).
  absl::flat_hash_map<std::string, double> tenant_rates;
  // A request waits at most this long for its tenant's slot.
  absl::Duration max_wait = absl::Seconds(10);
  // How long a tenant is left alone after a 429 that gave no Retry-After.
  absl::Duration default_pause = absl::Seconds(10);
  // A request made to wait for its tenant's slot ("paced"), or refused
  // without a provider request because its tenant is throttled ("throttled").
  std::function<void(absl::string_view what)> on_pacing;
};

class TenantPacer {
 public:
  TenantPacer(const Clock& clock, TenantPacerOptions options) : clock_(clock), options_(std::move(options)) {}

  // Waits for `tenant`'s next slot and takes it. UNAVAILABLE naming the
  // tenant, and in `retry_at` when its slot comes, when that is more than
  // max_wait away.
  absl::Status Wait(const std::string& tenant, absl::Time* retry_at);
  // The provider throttled `tenant`: no request goes to it before
  // now + retry_after (default_pause when zero).
  void Throttled(const std::string& tenant, absl::Duration retry_after);

 private:
  struct Pace {
    // The theoretical arrival time of the tenant's next request.
    absl::Time next = absl::InfinitePast();
    absl::Time paused_until = absl::InfinitePast();
  };

  const Clock& clock_;
  const TenantPacerOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Pace> tenants_ ABSL_GUARDED_BY(mu_);
};

// The pacing key of an app's requests: its provider and tenant ("microsoft/
// contoso.onmicrosoft.com"; an app without a tenant is its own).
std::string PacingKey(absl::string_view provider, absl::string_view tenant, absl::string_view app_id);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_TENANT_PACER_H_
