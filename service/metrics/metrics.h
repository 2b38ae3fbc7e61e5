// The broker's metric handles, created once at start-up in one registry.
// Per-request code only increments handles it already holds; no label value is
// ever built from caller input or secrets. Thread-safe after construction.
#ifndef TOKENBROKER_SERVICE_METRICS_METRICS_H_
#define TOKENBROKER_SERVICE_METRICS_METRICS_H_

#include <array>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace tokenbroker {

// The number of gRPC status codes (OK = 0 ... UNAUTHENTICATED = 16).
inline constexpr int kGrpcStatusCodeCount = 17;

// The canonical name of a gRPC status code ("OK", "NOT_FOUND", ...).
std::string GrpcCodeName(int code);

struct GrpcMethodMetrics {
  // tokenbroker_grpc_requests_total{method, code}, one per code.
  std::array<prometheus::Counter*, kGrpcStatusCodeCount> requests{};
  // tokenbroker_grpc_request_duration_seconds{method}.
  prometheus::Histogram* latency = nullptr;
};

struct BuildInfo {
  std::string version;
  std::string revision;
};

class Metrics {
 public:
  // `grpc_methods`: every method the server serves, as
  // "package.Service/Method". Calls to any other method count as "unknown".
  Metrics(const BuildInfo& build, const std::vector<std::string>& grpc_methods);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // The handles of a method by its gRPC path ("/package.Service/Method" or
  // without the leading slash); "unknown"'s handles for any other.
  GrpcMethodMetrics& ForGrpcMethod(absl::string_view path);

  static const std::vector<double>& LatencyBuckets();

  // tokenbroker_token_requests_total{result}: "cache_hit", "refreshed",
  // "stale" or "error"; anything else counts as "error".
  prometheus::Counter& TokenRequests(absl::string_view result);
  // tokenbroker_refreshes_total{provider, outcome} and
  // tokenbroker_refresh_duration_seconds{provider}. Providers: "microsoft",
  // "google", "oidc"; outcomes: "ok", "transient", "throttled",
  // "invalid_grant", "invalid_client", "app_configuration".
  void ObserveRefresh(absl::string_view provider, absl::string_view outcome, double seconds);
  // tokenbroker_idp_http_requests_total{provider, status_class}: 2xx, 3xx,
  // 4xx, 5xx, or transport (http_status 0: no HTTP answer).
  void CountIdpHttpRequest(absl::string_view provider, int http_status);
  // tokenbroker_consents_total{flow, result}: flows "authorization_code",
  // "device_code"; results "started", "completed", "failed".
  void CountConsent(absl::string_view flow, absl::string_view result);
  // tokenbroker_imap_operations_total{operation, result} and
  // tokenbroker_imap_operation_duration_seconds{operation}: operations
  // "login", "list", "status", "search", "fetch"; results gRPC code names.
  void ObserveImap(absl::string_view operation, absl::string_view result, double seconds);
  // tokenbroker_imap_auth_failures_total{kind}: "rejected", "permission",
  // "unavailable".
  void CountImapAuthFailure(absl::string_view kind);
  // tokenbroker_imap_fetched_bytes_total.
  void CountFetchedBytes(uint64_t bytes);
  // tokenbroker_mailbox_watchers: WatchMailbox callers now.
  void AddMailboxWatchers(int delta);
  // tokenbroker_mailbox_watch_events_total{kind}: "new", "expunged",
  // "flags", "resync" (one per watcher told).
  void CountMailboxWatchEvent(absl::string_view kind);
  // tokenbroker_mailbox_watch_reconnects_total{reason}: "connection" (lost),
  // "token" (a fresh login before the token expires), "grant_changed".
  void CountMailboxWatchReconnect(absl::string_view reason);
  // tokenbroker_calls_refused_total{action, reason}: actions as in the
  // policy ("token.get", ...); reasons "unauthenticated",
  // "permission_denied", "rate_limited".
  void CountRefusedCall(absl::string_view action, absl::string_view reason);
  // tokenbroker_audit_events_dropped_total and
  // tokenbroker_audit_write_failures_total.
  void CountAuditDropped();
  void CountAuditWriteFailure();

  // tokenbroker_provider_requests_paced_total{outcome}: "paced" (waited for
  // its tenant's turn) or "throttled" (not made); anything else is ignored.
  void CountPacing(absl::string_view what);

  // Several replicas on one store (docs/high-availability.md):
  // tokenbroker_refresh_leases_total{outcome}: "acquired", "took_over",
  // "contended"; anything else is ignored.
  void CountLease(absl::string_view outcome);
  // tokenbroker_shared_tokens_adopted_total.
  void CountSharedTokenAdopted();
  // tokenbroker_refresh_waiting_calls: calls waiting for another replica's
  // refresh.
  void AddWaitingCalls(int delta);
  // tokenbroker_replicas_alive and tokenbroker_replica_info{replica}.
  void SetReplicas(absl::string_view self, size_t alive);
  // tokenbroker_change_feed_connected and
  // tokenbroker_change_feed_disconnects_total.
  void SetChangeFeedConnected(bool up);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* grpc_requests_;
  prometheus::Family<prometheus::Histogram>* grpc_latency_;
  // Built in the constructor and never changed: lock-free reads.
  absl::flat_hash_map<std::string, GrpcMethodMetrics> grpc_methods_;
  GrpcMethodMetrics* unknown_method_;
  absl::flat_hash_map<std::string, prometheus::Counter*> token_requests_;
  absl::flat_hash_map<std::string, prometheus::Counter*> refreshes_;  // "provider/outcome"
  absl::flat_hash_map<std::string, prometheus::Histogram*> refresh_latency_;
  absl::flat_hash_map<std::string, prometheus::Counter*> idp_http_;  // "provider/class"
  absl::flat_hash_map<std::string, prometheus::Counter*> consents_;  // "flow/result"
  void RegisterImapMetrics();
  absl::flat_hash_map<std::string, prometheus::Counter*> imap_operations_;  // "operation/result"
  absl::flat_hash_map<std::string, prometheus::Histogram*> imap_latency_;
  absl::flat_hash_map<std::string, prometheus::Counter*> imap_auth_failures_;
  prometheus::Counter* imap_fetched_bytes_ = nullptr;
  prometheus::Gauge* mailbox_watchers_ = nullptr;
  absl::flat_hash_map<std::string, prometheus::Counter*> watch_events_;
  absl::flat_hash_map<std::string, prometheus::Counter*> watch_reconnects_;
  void RegisterSecurityMetrics();
  absl::flat_hash_map<std::string, prometheus::Counter*> refused_calls_;  // "action/reason"
  prometheus::Counter* audit_dropped_ = nullptr;
  prometheus::Counter* audit_write_failures_ = nullptr;
  void RegisterReplicaMetrics();
  absl::flat_hash_map<std::string, prometheus::Counter*> leases_;
  absl::flat_hash_map<std::string, prometheus::Counter*> pacing_;
  prometheus::Counter* shared_adopted_ = nullptr;
  prometheus::Gauge* waiting_calls_ = nullptr;
  prometheus::Gauge* replicas_alive_ = nullptr;
  prometheus::Family<prometheus::Gauge>* replica_info_ = nullptr;
  prometheus::Gauge* change_feed_connected_ = nullptr;
  prometheus::Counter* change_feed_disconnects_ = nullptr;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_METRICS_METRICS_H_
