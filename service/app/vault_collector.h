// Metrics read at scrape time: when each app credential expires and whether
// it is failing (from the store), how many grants are in each state (from the
// grant watch's memory once it has read them, else from the store), and
// (unless switched off for very large fleets) per-grant refresh times, so that
// alerts fire weeks before a client secret expires or a refresh token dies of
// inactivity. Label values are operator-chosen ids, never secrets.
// Thread-safe (the store is).
#ifndef TOKENBROKER_SERVICE_APP_VAULT_COLLECTOR_H_
#define TOKENBROKER_SERVICE_APP_VAULT_COLLECTOR_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/metric_family.h"
#include "service/store/credential_store.h"

namespace tokenbroker {

class VaultCollector final : public prometheus::Collectable {
 public:
  // Grants by state from memory (GrantWatch::GrantCounts); nullopt while not
  // known.
  using GrantCounts = std::function<std::optional<std::map<GrantState, size_t>>()>;

  VaultCollector(CredentialStore& store, bool per_grant) : store_(store), per_grant_(per_grant) {}
  // Without per-grant series, a scrape then reads no grant from the store:
  // its cost does not grow with the number of grants.
  void UseGrantCounts(GrantCounts counts);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  CredentialStore& store_;
  const bool per_grant_;
  mutable absl::Mutex mu_;
  GrantCounts counts_ ABSL_GUARDED_BY(mu_);
};

// tokenbroker_grant_access_token_expiry_timestamp_seconds{grant}: when the
// access token this replica holds for each grant expires (from the token
// cache, not the store). Registered only when per-grant series are on.
class AccessTokenExpiryCollector final : public prometheus::Collectable {
 public:
  explicit AccessTokenExpiryCollector(std::function<std::map<std::string, absl::Time>()> expiries)
      : expiries_(std::move(expiries)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<std::map<std::string, absl::Time>()> expiries_;
};

// tokenbroker_imap_connections{state}: pooled IMAP connections, "idle" or
// "in_use", from a callback giving (idle, in_use).
class MailConnectionsCollector final : public prometheus::Collectable {
 public:
  explicit MailConnectionsCollector(std::function<std::pair<int, int>()> counts) : counts_(std::move(counts)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<std::pair<int, int>()> counts_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_APP_VAULT_COLLECTOR_H_
