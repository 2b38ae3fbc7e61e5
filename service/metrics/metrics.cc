#include "service/metrics/metrics.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tokenbroker {

std::string GrpcCodeName(int code) {
  // gRPC's codes are Abseil's canonical codes, with the same names.
  if (code < 0 || code >= kGrpcStatusCodeCount) return "UNKNOWN";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

const std::vector<double>& Metrics::LatencyBuckets() {
  static const std::vector<double>* buckets = new std::vector<double>{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *buckets;
}

Metrics::Metrics(const BuildInfo& build, const std::vector<std::string>& grpc_methods)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("tokenbroker_build_info")
      .Help("Always 1; the labels say which build is running.")
      .Register(*registry_)
      .Add({{"version", build.version}, {"revision", build.revision}})
      .Set(1);
  grpc_requests_ = &prometheus::BuildCounter()
                        .Name("tokenbroker_grpc_requests_total")
                        .Help("gRPC requests handled, by method and status code.")
                        .Register(*registry_);
  grpc_latency_ = &prometheus::BuildHistogram()
                       .Name("tokenbroker_grpc_request_duration_seconds")
                       .Help("Time from receiving a gRPC request to sending its status, by method.")
                       .Register(*registry_);
  auto add_method = [this](const std::string& method) {
    GrpcMethodMetrics& m = grpc_methods_[method];
    for (int code = 0; code < kGrpcStatusCodeCount; ++code) {
      m.requests[code] = &grpc_requests_->Add({{"method", method}, {"code", std::string(GrpcCodeName(code))}});
    }
    m.latency = &grpc_latency_->Add({{"method", method}}, LatencyBuckets());
  };
  for (const std::string& method : grpc_methods) add_method(std::string(absl::StripPrefix(method, "/")));
  add_method("unknown");
  unknown_method_ = &grpc_methods_.at("unknown");

  auto& token_requests = prometheus::BuildCounter()
                             .Name("tokenbroker_token_requests_total")
                             .Help("GetAccessToken results: cache_hit, refreshed, stale (provider failing, cached "
                                   "token still valid) or error.")
                             .Register(*registry_);
  for (const char* result : {"cache_hit", "refreshed", "stale", "error"}) {
    token_requests_[result] = &token_requests.Add({{"result", result}});
  }
  auto& refreshes = prometheus::BuildCounter()
                        .Name("tokenbroker_refreshes_total")
                        .Help("Token requests to identity providers, by provider and outcome.")
                        .Register(*registry_);
  auto& refresh_latency = prometheus::BuildHistogram()
                              .Name("tokenbroker_refresh_duration_seconds")
                              .Help("Time of one token request to an identity provider.")
                              .Register(*registry_);
  for (const char* provider : {"microsoft", "google", "oidc"}) {
    for (const char* outcome :
         {"ok", "transient", "throttled", "invalid_grant", "invalid_client", "app_configuration"}) {
      refreshes_[absl::StrCat(provider, "/", outcome)] = &refreshes.Add({{"provider", provider}, {"outcome", outcome}});
    }
    refresh_latency_[provider] = &refresh_latency.Add({{"provider", provider}}, LatencyBuckets());
  }
  auto& idp_http = prometheus::BuildCounter()
                       .Name("tokenbroker_idp_http_requests_total")
                       .Help("HTTP requests to identity providers (token, discovery, device authorization), by "
                             "provider and status class: 2xx, 3xx, 4xx, 5xx, or transport (no HTTP answer).")
                       .Register(*registry_);
  for (const char* provider : {"microsoft", "google", "oidc"}) {
    for (const char* status_class : {"2xx", "3xx", "4xx", "5xx", "transport"}) {
      idp_http_[absl::StrCat(provider, "/", status_class)] =
          &idp_http.Add({{"provider", provider}, {"status_class", status_class}});
    }
  }
  RegisterImapMetrics();
  RegisterSecurityMetrics();
  RegisterReplicaMetrics();
  auto& pacing = prometheus::BuildCounter()
                     .Name("tokenbroker_provider_requests_paced_total")
                     .Help("Identity-provider requests held back per tenant: paced (waited for the tenant's turn, "
                           "tokens.tenant_requests_per_second or the tenant's own in tokens.tenant_rates) or "
                           "throttled (not made: the tenant answered 429 or its turn was further than "
                           "tokens.tenant_max_wait).")
                     .Register(*registry_);
  for (const char* what : {"paced", "throttled"}) pacing_[what] = &pacing.Add({{"outcome", what}});
  auto& consents = prometheus::BuildCounter()
                       .Name("tokenbroker_consents_total")
                       .Help("Consent flows by flow (authorization_code, device_code) and result: started, "
                             "completed, failed.")
                       .Register(*registry_);
  for (const char* flow : {"authorization_code", "device_code"}) {
    for (const char* result : {"started", "completed", "failed"}) {
      consents_[absl::StrCat(flow, "/", result)] = &consents.Add({{"flow", flow}, {"result", result}});
    }
  }
}

void Metrics::RegisterReplicaMetrics() {
  auto& leases = prometheus::BuildCounter()
                     .Name("tokenbroker_refresh_leases_total")
                     .Help("Refresh leases asked for (several replicas): acquired, took_over (from a replica whose "
                           "lease ran out unreleased), contended (another replica was refreshing).")
                     .Register(*registry_);
  for (const char* outcome : {"acquired", "took_over", "contended"}) {
    leases_[outcome] = &leases.Add({{"outcome", outcome}});
  }
  shared_adopted_ = &prometheus::BuildCounter()
                         .Name("tokenbroker_shared_tokens_adopted_total")
                         .Help("Access tokens another replica refreshed, served without a provider request.")
                         .Register(*registry_)
                         .Add({});
  waiting_calls_ = &prometheus::BuildGauge()
                        .Name("tokenbroker_refresh_waiting_calls")
                        .Help("Calls waiting now for another replica to finish refreshing their grant.")
                        .Register(*registry_)
                        .Add({});
  replicas_alive_ = &prometheus::BuildGauge()
                         .Name("tokenbroker_replicas_alive")
                         .Help("Replicas whose heartbeat this replica last saw in the store (itself included; 0 "
                               "with a store for one process).")
                         .Register(*registry_)
                         .Add({});
  replica_info_ = &prometheus::BuildGauge()
                       .Name("tokenbroker_replica_info")
                       .Help("This replica's name in the store (leases, heartbeats); always 1.")
                       .Register(*registry_);
  change_feed_connected_ = &prometheus::BuildGauge()
                                .Name("tokenbroker_change_feed_connected")
                                .Help("1 while this replica hears the other replicas' changes (PostgreSQL LISTEN).")
                                .Register(*registry_)
                                .Add({});
  change_feed_disconnects_ = &prometheus::BuildCounter()
                                  .Name("tokenbroker_change_feed_disconnects_total")
                                  .Help("Times the change feed's connection was lost (every cache is re-read "
                                        "after it comes back).")
                                  .Register(*registry_)
                                  .Add({});
}

void Metrics::CountLease(absl::string_view outcome) {
  auto it = leases_.find(outcome);
  if (it != leases_.end()) it->second->Increment();
}

void Metrics::CountPacing(absl::string_view what) {
  auto it = pacing_.find(what);
  if (it != pacing_.end()) it->second->Increment();
}

void Metrics::CountSharedTokenAdopted() { shared_adopted_->Increment(); }

void Metrics::AddWaitingCalls(int delta) { waiting_calls_->Increment(delta); }

void Metrics::SetReplicas(absl::string_view self, size_t alive) {
  replicas_alive_->Set(static_cast<double>(alive));
  replica_info_->Add({{"replica", std::string(self)}}).Set(1);
}

void Metrics::SetChangeFeedConnected(bool up) {
  if (!up && change_feed_connected_->Value() > 0) change_feed_disconnects_->Increment();
  change_feed_connected_->Set(up ? 1 : 0);
}

void Metrics::RegisterSecurityMetrics() {
  auto& refused = prometheus::BuildCounter()
                      .Name("tokenbroker_calls_refused_total")
                      .Help("Calls refused before any work, by policy action and reason: unauthenticated, "
                            "permission_denied, rate_limited.")
                      .Register(*registry_);
  for (const char* action : {"token.get", "mail.read", "admin.read", "admin.write", "consent"}) {
    for (const char* reason : {"unauthenticated", "permission_denied", "rate_limited"}) {
      refused_calls_[absl::StrCat(action, "/", reason)] = &refused.Add({{"action", action}, {"reason", reason}});
    }
  }
  audit_dropped_ = &prometheus::BuildCounter()
                        .Name("tokenbroker_audit_events_dropped_total")
                        .Help("Audit events dropped because too many were waiting to be written (the store is "
                              "down or too slow).")
                        .Register(*registry_)
                        .Add({});
  audit_write_failures_ = &prometheus::BuildCounter()
                               .Name("tokenbroker_audit_write_failures_total")
                               .Help("Batches of audit events the store refused (they are retried).")
                               .Register(*registry_)
                               .Add({});
}

void Metrics::CountRefusedCall(absl::string_view action, absl::string_view reason) {
  auto counter = refused_calls_.find(absl::StrCat(action, "/", reason));
  if (counter != refused_calls_.end()) counter->second->Increment();
}

void Metrics::CountAuditDropped() { audit_dropped_->Increment(); }
void Metrics::CountAuditWriteFailure() { audit_write_failures_->Increment(); }

void Metrics::RegisterImapMetrics() {
  auto& operations = prometheus::BuildCounter()
                         .Name("tokenbroker_imap_operations_total")
                         .Help("IMAP work done for MailService, by operation (login, list, status, search, fetch) "
                               "and result (a gRPC status code name).")
                         .Register(*registry_);
  auto& latency = prometheus::BuildHistogram()
                      .Name("tokenbroker_imap_operation_duration_seconds")
                      .Help("Time of one IMAP operation, connection and login included when they happen.")
                      .Register(*registry_);
  for (const char* op : {"login", "list", "status", "search", "fetch"}) {
    for (int code = 0; code < kGrpcStatusCodeCount; ++code) {
      const std::string name = GrpcCodeName(code);
      imap_operations_[absl::StrCat(op, "/", name)] = &operations.Add({{"operation", op}, {"result", name}});
    }
    imap_latency_[op] = &latency.Add({{"operation", op}}, LatencyBuckets());
  }
  auto& auth = prometheus::BuildCounter()
                   .Name("tokenbroker_imap_auth_failures_total")
                   .Help("IMAP logins that failed: rejected (the server refused the token), permission (token "
                         "accepted, mailbox refused), unavailable (the server failed).")
                   .Register(*registry_);
  for (const char* kind : {"rejected", "permission", "unavailable"}) imap_auth_failures_[kind] = &auth.Add({{"kind", kind}});
  imap_fetched_bytes_ = &prometheus::BuildCounter()
                             .Name("tokenbroker_imap_fetched_bytes_total")
                             .Help("Message bytes sent to FetchMessage and GetMessage callers.")
                             .Register(*registry_)
                             .Add({});
  mailbox_watchers_ = &prometheus::BuildGauge()
                           .Name("tokenbroker_mailbox_watchers")
                           .Help("WatchMailbox callers now (callers of one folder share one IMAP connection).")
                           .Register(*registry_)
                           .Add({});
  auto& events = prometheus::BuildCounter()
                     .Name("tokenbroker_mailbox_watch_events_total")
                     .Help("Mailbox changes sent to WatchMailbox callers (one per caller told), by kind: new, "
                           "expunged, flags, resync.")
                     .Register(*registry_);
  for (const char* kind : {"new", "expunged", "flags", "resync"}) watch_events_[kind] = &events.Add({{"kind", kind}});
  auto& reconnects = prometheus::BuildCounter()
                         .Name("tokenbroker_mailbox_watch_reconnects_total")
                         .Help("Mailbox watches that logged in again, by reason: connection (lost; the gap is "
                               "filled), token (before the access token expires), grant_changed.")
                         .Register(*registry_);
  for (const char* reason : {"connection", "token", "grant_changed"}) {
    watch_reconnects_[reason] = &reconnects.Add({{"reason", reason}});
  }
}

void Metrics::AddMailboxWatchers(int delta) { mailbox_watchers_->Increment(delta); }

void Metrics::CountMailboxWatchEvent(absl::string_view kind) {
  auto counter = watch_events_.find(kind);
  if (counter != watch_events_.end()) counter->second->Increment();
}

void Metrics::CountMailboxWatchReconnect(absl::string_view reason) {
  auto counter = watch_reconnects_.find(reason);
  if (counter != watch_reconnects_.end()) counter->second->Increment();
}

void Metrics::ObserveImap(absl::string_view operation, absl::string_view result, double seconds) {
  auto counter = imap_operations_.find(absl::StrCat(operation, "/", result));
  if (counter != imap_operations_.end()) counter->second->Increment();
  auto h = imap_latency_.find(operation);
  if (h != imap_latency_.end()) h->second->Observe(seconds);
}

void Metrics::CountImapAuthFailure(absl::string_view kind) {
  auto counter = imap_auth_failures_.find(kind);
  if (counter != imap_auth_failures_.end()) counter->second->Increment();
}

void Metrics::CountFetchedBytes(uint64_t bytes) { imap_fetched_bytes_->Increment(static_cast<double>(bytes)); }

void Metrics::CountIdpHttpRequest(absl::string_view provider, int http_status) {
  const char* status_class = http_status >= 200 && http_status < 300   ? "2xx"
                             : http_status >= 300 && http_status < 400 ? "3xx"
                             : http_status >= 400 && http_status < 500 ? "4xx"
                             : http_status >= 500                      ? "5xx"
                                                                       : "transport";
  auto counter = idp_http_.find(absl::StrCat(provider, "/", status_class));
  if (counter != idp_http_.end()) counter->second->Increment();
}

void Metrics::CountConsent(absl::string_view flow, absl::string_view result) {
  auto counter = consents_.find(absl::StrCat(flow, "/", result));
  if (counter != consents_.end()) counter->second->Increment();
}

prometheus::Counter& Metrics::TokenRequests(absl::string_view result) {
  auto it = token_requests_.find(result);
  return it == token_requests_.end() ? *token_requests_.at("error") : *it->second;
}

void Metrics::ObserveRefresh(absl::string_view provider, absl::string_view outcome, double seconds) {
  auto counter = refreshes_.find(absl::StrCat(provider, "/", outcome));
  if (counter != refreshes_.end()) counter->second->Increment();
  auto latency = refresh_latency_.find(provider);
  if (latency != refresh_latency_.end()) latency->second->Observe(seconds);
}

GrpcMethodMetrics& Metrics::ForGrpcMethod(absl::string_view path) {
  auto it = grpc_methods_.find(absl::StripPrefix(path, "/"));
  return it == grpc_methods_.end() ? *unknown_method_ : it->second;
}

}  // namespace tokenbroker
