#include "service/authz/policy.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tokenbroker {

absl::string_view ActionName(Action action) {
  switch (action) {
    case Action::kTokenGet:
      return "token.get";
    case Action::kMailRead:
      return "mail.read";
    case Action::kAdminRead:
      return "admin.read";
    case Action::kAdminWrite:
      return "admin.write";
    case Action::kConsent:
      return "consent";
  }
  return "unknown";
}

std::optional<Action> ParseAction(absl::string_view name) {
  for (Action a : {Action::kTokenGet, Action::kMailRead, Action::kAdminRead, Action::kAdminWrite, Action::kConsent}) {
    if (ActionName(a) == name) return a;
  }
  return std::nullopt;
}

bool GlobMatch(absl::string_view pattern, absl::string_view text) {
  // Iterative matching with one backtrack point: linear in practice, never
  // exponential whatever the pattern.
  size_t p = 0, t = 0, star = absl::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != absl::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

absl::StatusOr<Policy> Policy::Create(const config::v1::AuthConfig& auth) {
  std::map<std::string, std::vector<std::string>> groups;
  for (const auto& g : auth.groups()) {
    if (g.name().empty() || groups.count(g.name()) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.groups: group name \"", g.name(), "\" is empty or used twice"));
    }
    groups[g.name()] = {g.members().begin(), g.members().end()};
  }
  Policy policy;
  for (int i = 0; i < auth.rules_size(); ++i) {
    const auto& r = auth.rules(i);
    Rule rule;
    rule.name = r.name().empty() ? absl::StrCat("rule-", i) : r.name();
    const std::string where = absl::StrCat("auth.rules[", i, "] (", rule.name, ")");
    for (const std::string& caller : r.callers()) {
      if (absl::StartsWith(caller, "group:")) {
        auto it = groups.find(caller.substr(6));
        if (it == groups.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ".callers: no group named \"", caller.substr(6), "\" in auth.groups"));
        }
        rule.callers.insert(rule.callers.end(), it->second.begin(), it->second.end());
      } else if (caller.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".callers: an empty caller matches no one"));
      } else {
        rule.callers.push_back(caller);
      }
    }
    if (r.callers().empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".callers: at least one"));
    for (const std::string& name : r.actions()) {
      if (name == "*") {
        rule.any_action = true;
        continue;
      }
      std::optional<Action> action = ParseAction(name);
      if (!action.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".actions: unknown action \"", name,
                         "\" (expected token.get, mail.read, admin.read, admin.write, consent or *)"));
      }
      rule.actions.push_back(*action);
    }
    if (r.actions().empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".actions: at least one"));
    rule.grants = {r.grants().begin(), r.grants().end()};
    rule.labels = {r.grant_labels().begin(), r.grant_labels().end()};
    if (rule.grants.empty() && rule.labels.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": set grants (ids or patterns, \"*\" for all) or grant_labels"));
    }
    if (r.has_rate_limit()) {
      const double rate = r.rate_limit().per_second();
      if (!(rate > 0) || !std::isfinite(rate)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".rate_limit.per_second: must be above 0"));
      }
      const double burst = r.rate_limit().burst() > 0 ? r.rate_limit().burst() : std::max(1.0, std::ceil(rate));
      rule.rate_limit = RateLimitRule{rate, burst};
    }
    policy.rules_.push_back(std::move(rule));
  }
  return policy;
}

bool Policy::CallerMatches(const Rule& rule, absl::string_view caller) const {
  if (caller.empty()) return false;
  for (const std::string& pattern : rule.callers) {
    if (GlobMatch(pattern, caller)) return true;
  }
  return false;
}

bool Policy::ActionMatches(const Rule& rule, Action action) {
  if (rule.any_action) return true;
  for (Action a : rule.actions) {
    if (a == action) return true;
  }
  return false;
}

PolicyDecision Policy::Evaluate(absl::string_view caller, Action action, const Resource& resource) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    if (!ActionMatches(rule, action) || !CallerMatches(rule, caller)) continue;
    bool covered = false;
    for (const std::string& pattern : rule.grants) {
      if (pattern == "*" || (!resource.grant.empty() && GlobMatch(pattern, resource.grant))) {
        covered = true;
        break;
      }
    }
    if (!covered && !rule.labels.empty() && !resource.grant.empty() && resource.labels != nullptr) {
      covered = true;
      for (const auto& [key, value] : rule.labels) {
        auto it = resource.labels->find(key);
        if (it == resource.labels->end() || it->second != value) {
          covered = false;
          break;
        }
      }
    }
    if (!covered) continue;
    return PolicyDecision{true, static_cast<int>(i), rule.name, rule.rate_limit};
  }
  return PolicyDecision{};
}

bool Policy::NeedsLabels(absl::string_view caller, Action action) const {
  for (const Rule& rule : rules_) {
    if (!rule.labels.empty() && ActionMatches(rule, action) && CallerMatches(rule, caller)) return true;
  }
  return false;
}

}  // namespace tokenbroker
