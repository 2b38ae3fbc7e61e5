// The one place where calls are let in: the caller's identity, the policy's
// verdict on (caller, action, grant), and the caller's rate limit. The
// identity configuration and the policy can be replaced while serving (the
// configuration file changed). Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUTHZ_AUTHORIZER_H_
#define TOKENBROKER_SERVICE_AUTHZ_AUTHORIZER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/authz/caller_identity.h"
#include "service/authz/policy.h"
#include "service/authz/rate_limiter.h"
#include "service/common/clock.h"

namespace tokenbroker {

struct Authorization {
  // OK, PERMISSION_DENIED (no rule allows it) or RESOURCE_EXHAUSTED (the
  // rule's rate limit; retry_after says when a call would be let in).
  absl::Status status;
  absl::Duration retry_after = absl::ZeroDuration();
  // The rule that allowed the call; empty when none did.
  std::string rule;
};

class Authorizer {
 public:
  // A grant's labels (no secrets are read); NOT_FOUND for an unknown grant.
  using LabelLookup = std::function<absl::StatusOr<std::map<std::string, std::string>>(absl::string_view grant)>;

  Authorizer(std::unique_ptr<IdentityResolver> resolver, Policy policy, LabelLookup labels, const Clock& clock);

  // Builds the resolver and the policy from `auth`; on error nothing changes.
  static absl::StatusOr<std::pair<std::unique_ptr<IdentityResolver>, Policy>> Build(const config::v1::AuthConfig& auth,
                                                                                    const Clock& clock);
  // Swaps in a new identity configuration and policy; calls already admitted
  // are not affected. Rate-limit buckets start afresh.
  void Replace(std::unique_ptr<IdentityResolver> resolver, Policy policy);

  absl::StatusOr<CallerIdentity> Authenticate(const CallerCredentials& credentials);

  // Whether `caller` may do `action` on `grant` (empty: the broker as a
  // whole), taking one token from the matching rule's bucket.
  Authorization Authorize(const CallerIdentity& caller, Action action, absl::string_view grant);

  // The policy's verdict alone, no rate limit: for filtering lists.
  // `labels`: the grant's labels when the caller has them at hand (then they
  // are not looked up).
  bool Allows(const CallerIdentity& caller, Action action, absl::string_view grant,
              const std::map<std::string, std::string>* labels = nullptr);

  // Drops the cached labels of `grant` (it changed or was deleted); "*": of
  // every grant.
  void ForgetGrant(absl::string_view grant);

 private:
  struct Snapshot {
    std::unique_ptr<IdentityResolver> resolver;
    Policy policy;
  };
  std::shared_ptr<const Snapshot> Current();
  PolicyDecision Decide(const Snapshot& snapshot, const CallerIdentity& caller, Action action, absl::string_view grant,
                        const std::map<std::string, std::string>* known_labels = nullptr);
  // Cached for a few seconds: label selectors are on the token hot path.
  std::optional<std::map<std::string, std::string>> Labels(absl::string_view grant);

  const LabelLookup lookup_;
  const Clock& clock_;
  RateLimiter limiter_;
  absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  struct CachedLabels {
    std::optional<std::map<std::string, std::string>> labels;  // nullopt: no such grant
    absl::Time fetched;
  };
  absl::Mutex labels_mu_;
  absl::flat_hash_map<std::string, CachedLabels> labels_ ABSL_GUARDED_BY(labels_mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUTHZ_AUTHORIZER_H_
