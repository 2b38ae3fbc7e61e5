// Who may do what to which grant: the `auth.rules` of the configuration,
// compiled once. Default deny: a call is allowed only by a rule that matches
// the caller, the action and the grant. Immutable after Create; thread-safe.
#ifndef TOKENBROKER_SERVICE_AUTHZ_POLICY_H_
#define TOKENBROKER_SERVICE_AUTHZ_POLICY_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenbroker/config/v1/config.pb.h"

namespace tokenbroker {

enum class Action { kTokenGet, kMailRead, kAdminRead, kAdminWrite, kConsent };

// "token.get", "mail.read", "admin.read", "admin.write", "consent".
absl::string_view ActionName(Action action);
std::optional<Action> ParseAction(absl::string_view name);

// `*` matches any run of characters (including none); everything else
// matches itself.
bool GlobMatch(absl::string_view pattern, absl::string_view text);

// What a call is about: one grant, or the broker as a whole (apps, keys, the
// audit trail), which only a rule with grant "*" covers.
struct Resource {
  std::string grant;  // empty: the broker as a whole
  // The grant's labels; nullptr when the caller of Evaluate has not looked
  // them up (then label selectors do not match).
  const std::map<std::string, std::string>* labels = nullptr;
};

struct RateLimitRule {
  double per_second = 0;
  double burst = 0;
};

struct PolicyDecision {
  bool allowed = false;
  // The rule that allowed the call (index into the rules; its name).
  int rule_index = -1;
  std::string rule_name;
  std::optional<RateLimitRule> rate_limit;
};

class Policy {
 public:
  // INVALID_ARGUMENT naming the rule and the key for an unknown action, an
  // unknown group, a rule that covers no grant, or a bad rate limit.
  static absl::StatusOr<Policy> Create(const config::v1::AuthConfig& auth);

  PolicyDecision Evaluate(absl::string_view caller, Action action, const Resource& resource) const;

  // Whether some rule for `caller` and `action` selects grants by label, so
  // that Evaluate needs the grant's labels to decide (false: names suffice).
  bool NeedsLabels(absl::string_view caller, Action action) const;

  size_t rule_count() const { return rules_.size(); }

 private:
  struct Rule {
    std::string name;
    std::vector<std::string> callers;  // patterns, groups expanded
    std::vector<Action> actions;
    bool any_action = false;          // "*": every action
    std::vector<std::string> grants;  // patterns
    std::map<std::string, std::string> labels;
    std::optional<RateLimitRule> rate_limit;
  };
  bool CallerMatches(const Rule& rule, absl::string_view caller) const;
  static bool ActionMatches(const Rule& rule, Action action);

  std::vector<Rule> rules_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUTHZ_POLICY_H_
