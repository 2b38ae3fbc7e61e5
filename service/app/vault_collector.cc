#include "service/app/vault_collector.h"

#include <map>

namespace tokenbroker {
namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void Add(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

double Seconds(absl::Time t) { return static_cast<double>(absl::ToUnixSeconds(t)); }

}  // namespace

void VaultCollector::UseGrantCounts(GrantCounts counts) {
  absl::MutexLock lock(&mu_);
  counts_ = std::move(counts);
}

std::vector<prometheus::MetricFamily> VaultCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  auto up = Gauge("tokenbroker_store_up", "1 when the store answered this scrape, 0 when it did not.");
  absl::StatusOr<std::vector<App>> apps = store_.ListApps();
  std::optional<std::map<GrantState, size_t>> known;
  if (!per_grant_) {
    absl::MutexLock lock(&mu_);
    if (counts_ != nullptr) known = counts_();
  }
  // Every grant is read only when the series need them.
  absl::StatusOr<std::vector<Grant>> grants =
      known.has_value() ? absl::StatusOr<std::vector<Grant>>(std::vector<Grant>()) : store_.ListGrants({});
  Add(up, {}, apps.ok() && grants.ok() ? 1 : 0);
  out.push_back(std::move(up));
  if (!apps.ok() || !grants.ok()) return out;

  auto expiry = Gauge("tokenbroker_app_credential_expiry_timestamp_seconds",
                      "When an app credential stops working (certificate notAfter, or the client secret's expiry), "
                      "seconds since the epoch.");
  auto failing = Gauge("tokenbroker_app_credential_failing",
                       "1 when the identity provider rejected the credential on its last use.");
  for (const App& app : *apps) {
    for (const AppCredential& c : app.credentials) {
      std::vector<prometheus::ClientMetric::Label> labels = {
          {"app", app.id}, {"credential", c.id}, {"kind", std::string(CredentialKindName(c.kind))}};
      if (c.not_after != absl::InfiniteFuture()) Add(expiry, labels, Seconds(c.not_after));
      Add(failing, {{"app", app.id}, {"credential", c.id}}, c.failing ? 1 : 0);
    }
  }
  out.push_back(std::move(expiry));
  out.push_back(std::move(failing));

  auto by_state = Gauge("tokenbroker_grants", "Grants by state.");
  std::map<GrantState, int> counts = {{GrantState::kActive, 0},
                                      {GrantState::kPendingConsent, 0},
                                      {GrantState::kNeedsReconsent, 0},
                                      {GrantState::kAppCredentialInvalid, 0},
                                      {GrantState::kDisabled, 0}};
  if (known.has_value()) {
    for (const auto& [state, n] : *known) counts[state] = static_cast<int>(n);
  } else {
    for (const Grant& g : *grants) ++counts[g.state];
  }
  for (const auto& [state, n] : counts) Add(by_state, {{"state", std::string(GrantStateName(state))}}, n);
  out.push_back(std::move(by_state));

  if (per_grant_) {
    auto refreshed = Gauge("tokenbroker_grant_last_refresh_timestamp_seconds",
                           "When the grant last got a token from its identity provider.");
    auto rt_used = Gauge("tokenbroker_grant_refresh_token_last_used_timestamp_seconds",
                         "Delegated grants: when the refresh token was last redeemed (Microsoft's die after 90 days "
                         "unused).");
    for (const Grant& g : *grants) {
      if (g.last_refresh_time != absl::InfinitePast()) {
        Add(refreshed, {{"app", g.app}, {"grant", g.id}}, Seconds(g.last_refresh_time));
      }
      if (g.kind == GrantKind::kDelegated) {
        // Never redeemed: count from consent or import.
        const absl::Time used = g.refresh_token_last_used_time != absl::InfinitePast() ? g.refresh_token_last_used_time
                                                                                        : g.consent_time;
        if (used != absl::InfinitePast()) Add(rt_used, {{"app", g.app}, {"grant", g.id}}, Seconds(used));
      }
    }
    out.push_back(std::move(refreshed));
    out.push_back(std::move(rt_used));
  }
  return out;
}

std::vector<prometheus::MetricFamily> AccessTokenExpiryCollector::Collect() const {
  auto expiry = Gauge("tokenbroker_grant_access_token_expiry_timestamp_seconds",
                      "When the access token this replica has cached for the grant expires.");
  for (const auto& [grant, time] : expiries_()) Add(expiry, {{"grant", grant}}, Seconds(time));
  return {std::move(expiry)};
}

std::vector<prometheus::MetricFamily> MailConnectionsCollector::Collect() const {
  auto connections = Gauge("tokenbroker_imap_connections", "Pooled IMAP connections by state: idle or in_use.");
  const auto [idle, in_use] = counts_();
  Add(connections, {{"state", "idle"}}, idle);
  Add(connections, {{"state", "in_use"}}, in_use);
  return {std::move(connections)};
}

}  // namespace tokenbroker
