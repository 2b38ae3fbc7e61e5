#include "service/authz/authorizer.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

constexpr absl::Duration kLabelCacheLifetime = absl::Seconds(5);
constexpr size_t kMaxCachedLabelSets = 100000;

}  // namespace

Authorizer::Authorizer(std::unique_ptr<IdentityResolver> resolver, Policy policy, LabelLookup labels,
                       const Clock& clock)
    : lookup_(std::move(labels)), clock_(clock), limiter_(clock) {
  Replace(std::move(resolver), std::move(policy));
}

absl::StatusOr<std::pair<std::unique_ptr<IdentityResolver>, Policy>> Authorizer::Build(
    const config::v1::AuthConfig& auth, const Clock& clock) {
  ASSIGN_OR_RETURN(Policy policy, Policy::Create(auth));
  ASSIGN_OR_RETURN(std::unique_ptr<IdentityResolver> resolver, IdentityResolver::Create(auth, clock));
  return std::make_pair(std::move(resolver), std::move(policy));
}

void Authorizer::Replace(std::unique_ptr<IdentityResolver> resolver, Policy policy) {
  auto snapshot = std::make_shared<Snapshot>(Snapshot{std::move(resolver), std::move(policy)});
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(snapshot);
  }
  limiter_.Reset();
}

std::shared_ptr<const Authorizer::Snapshot> Authorizer::Current() {
  // Shared: every call reads it, on many gRPC threads at once.
  absl::ReaderMutexLock lock(&mu_);
  return snapshot_;
}

absl::StatusOr<CallerIdentity> Authorizer::Authenticate(const CallerCredentials& credentials) {
  return Current()->resolver->Resolve(credentials);
}

std::optional<std::map<std::string, std::string>> Authorizer::Labels(absl::string_view grant) {
  const absl::Time now = clock_.Now();
  {
    absl::ReaderMutexLock lock(&labels_mu_);
    auto it = labels_.find(grant);
    if (it != labels_.end() && now - it->second.fetched < kLabelCacheLifetime) return it->second.labels;
  }
  absl::StatusOr<std::map<std::string, std::string>> fetched = lookup_(grant);
  // A grant that cannot be looked up is treated as unlabelled: label rules
  // then do not match, which denies (never allows) by mistake.
  std::optional<std::map<std::string, std::string>> labels;
  if (fetched.ok()) labels = std::move(*fetched);
  if (fetched.ok() || absl::IsNotFound(fetched.status())) {
    absl::MutexLock lock(&labels_mu_);
    if (labels_.size() >= kMaxCachedLabelSets) labels_.clear();
    labels_[grant] = CachedLabels{labels, now};
  }
  return labels;
}

PolicyDecision Authorizer::Decide(const Snapshot& snapshot, const CallerIdentity& caller, Action action,
                                  absl::string_view grant, const std::map<std::string, std::string>* known_labels) {
  Resource resource{std::string(grant), nullptr};
  PolicyDecision decision = snapshot.policy.Evaluate(caller.name, action, resource);
  if (decision.allowed || grant.empty() || !snapshot.policy.NeedsLabels(caller.name, action)) return decision;
  std::optional<std::map<std::string, std::string>> looked_up;
  if (known_labels == nullptr) {
    looked_up = Labels(grant);
    if (!looked_up.has_value()) return decision;
    known_labels = &*looked_up;
  }
  resource.labels = known_labels;
  return snapshot.policy.Evaluate(caller.name, action, resource);
}

Authorization Authorizer::Authorize(const CallerIdentity& caller, Action action, absl::string_view grant) {
  PolicyDecision decision = Decide(*Current(), caller, action, grant);
  Authorization result;
  if (!decision.allowed) {
    result.status = absl::PermissionDeniedError(
        absl::StrCat("caller \"", caller.name, "\" may not ", ActionName(action), " on ",
                     grant.empty() ? std::string("the broker")
                                   : absl::StrCat("grant \"", absl::CHexEscape(grant.substr(0, 128)), "\""),
                     " (no auth.rules entry allows it)"));
    return result;
  }
  result.rule = decision.rule_name;
  if (decision.rate_limit.has_value()) {
    const absl::Duration wait = limiter_.Take(decision.rule_name, caller.name, *decision.rate_limit);
    if (wait > absl::ZeroDuration()) {
      result.retry_after = wait;
      result.status = absl::ResourceExhaustedError(
          absl::StrFormat("caller \"%s\" is over the rate limit of rule \"%s\" (%.6g calls/s); retry after %dms",
                          caller.name, decision.rule_name, decision.rate_limit->per_second,
                          absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)))));
    }
  }
  return result;
}

bool Authorizer::Allows(const CallerIdentity& caller, Action action, absl::string_view grant,
                        const std::map<std::string, std::string>* labels) {
  return Decide(*Current(), caller, action, grant, labels).allowed;
}

void Authorizer::ForgetGrant(absl::string_view grant) {
  absl::MutexLock lock(&labels_mu_);
  if (grant == "*") {
    labels_.clear();
  } else {
    labels_.erase(grant);
  }
}

}  // namespace tokenbroker
