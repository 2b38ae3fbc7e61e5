#include "service/app/service_graph.h"

#include "service/common/time_util.h"
#include "service/tokens/tenant_pacer.h"

namespace tokenbroker {
namespace {

TokenManagerOptions TokenOptions(const ServiceGraphParts& parts) {
  TokenManagerOptions options;
  const auto& tc = parts.config->tokens();
  Metrics* metrics = parts.metrics;
  if (tc.has_initial_backoff()) options.initial_backoff = FromProtoDuration(tc.initial_backoff());
  if (tc.has_max_backoff()) options.max_backoff = FromProtoDuration(tc.max_backoff());
  if (tc.has_min_slack()) options.min_slack = FromProtoDuration(tc.min_slack());
  // One limit on provider requests, shared by the scheduler's and callers'
  // refreshes; both have as many threads as it allows.
  options.max_concurrent_refreshes =
      tc.max_concurrent_refreshes() > 0 ? static_cast<int>(tc.max_concurrent_refreshes()) : 8;
  if (tc.has_tenant_requests_per_second()) options.pacing.requests_per_second = tc.tenant_requests_per_second();
  if (tc.has_tenant_max_wait()) options.pacing.max_wait = FromProtoDuration(tc.tenant_max_wait());
  for (const auto& rate : tc.tenant_rates()) {
    const absl::string_view provider = ProviderName(static_cast<Provider>(rate.provider()));
    options.pacing.tenant_rates[PacingKey(provider, rate.tenant(), "")] = rate.requests_per_second();
  }
  options.pacing.on_pacing = [metrics](absl::string_view what) { metrics->CountPacing(what); };
  options.on_token = [metrics](absl::string_view result) { metrics->TokenRequests(result).Increment(); };
  options.on_refresh = [metrics](Provider provider, absl::string_view outcome, absl::Duration latency) {
    metrics->ObserveRefresh(ProviderName(provider), outcome, absl::ToDoubleSeconds(latency));
  };
  if (parts.membership != nullptr) {
    ReplicaOptions& replicas = options.replicas;
    replicas.enabled = true;
    replicas.replica_id = parts.membership->id();
    replicas.lease_ttl = parts.lease_ttl;
    replicas.on_lease = [metrics](absl::string_view outcome) { metrics->CountLease(outcome); };
    replicas.on_adopted = [metrics] { metrics->CountSharedTokenAdopted(); };
    replicas.on_waiting = [metrics](int delta) { metrics->AddWaitingCalls(delta); };
  }
  return options;
}

SchedulerOptions SchedulingOptions(const ServiceGraphParts& parts, int max_refreshes) {
  SchedulerOptions options;
  const auto& tc = parts.config->tokens();
  if (tc.has_refresh_interval()) options.interval = FromProtoDuration(tc.refresh_interval());
  options.max_concurrent = max_refreshes;
  if (tc.has_keepalive_after()) options.keepalive_after = FromProtoDuration(tc.keepalive_after());
  if (parts.membership != nullptr) {
    ReplicaMembership* membership = parts.membership;
    options.owns = [membership](absl::string_view grant) { return membership->Owns(grant); };
    options.takeover_after = parts.lease_ttl;
  }
  return options;
}

MailPoolOptions PoolOptions(const ServiceGraphParts& parts) {
  MailPoolOptions options;
  const auto& mc = parts.config->mail();
  Metrics* metrics = parts.metrics;
  options.ca_file = mc.ca_file();
  if (mc.max_connections_per_mailbox() > 0) options.max_per_mailbox = mc.max_connections_per_mailbox();
  if (mc.has_idle_timeout()) options.idle_timeout = FromProtoDuration(mc.idle_timeout());
  if (mc.has_connect_timeout()) options.connect_timeout = FromProtoDuration(mc.connect_timeout());
  if (mc.has_io_timeout()) options.io_timeout = FromProtoDuration(mc.io_timeout());
  if (mc.mechanism() == config::v1::MailConfig::MECHANISM_OAUTHBEARER) options.mechanism = SaslMechanism::kOauthbearer;
  options.on_operation = [metrics](absl::string_view operation, absl::string_view result, absl::Duration latency) {
    metrics->ObserveImap(operation, result, absl::ToDoubleSeconds(latency));
  };
  options.on_auth_failure = [metrics](absl::string_view kind) { metrics->CountImapAuthFailure(kind); };
  return options;
}

MailboxWatchOptions WatchOptions(const ServiceGraphParts& parts) {
  MailboxWatchOptions options;
  const auto& mc = parts.config->mail();
  Metrics* metrics = parts.metrics;
  if (mc.has_idle_renew()) options.idle_renew = FromProtoDuration(mc.idle_renew());
  if (mc.max_watchers() > 0) options.max_watchers = mc.max_watchers();
  const size_t per_mailbox = mc.max_connections_per_mailbox() > 0 ? mc.max_connections_per_mailbox()
                                                                   : MailPoolOptions().max_per_mailbox;
  options.max_folders_per_grant = std::max<size_t>(1, per_mailbox - 1);
  options.on_event = [metrics](absl::string_view kind) { metrics->CountMailboxWatchEvent(kind); };
  options.on_reconnect = [metrics](absl::string_view reason) { metrics->CountMailboxWatchReconnect(reason); };
  options.on_watchers = [metrics](int delta) { metrics->AddMailboxWatchers(delta); };
  return options;
}

}  // namespace

ServiceGraph BuildServiceGraph(const ServiceGraphParts& parts) {
  ServiceGraph graph;
  Metrics* metrics = parts.metrics;
  TokenManagerOptions token_options = TokenOptions(parts);
  const int max_refreshes = token_options.max_concurrent_refreshes;
  graph.tokens = std::make_unique<TokenManager>(*parts.vault, parts.providers, *parts.clock, *parts.logger,
                                                std::move(token_options));

  ConsentOptions consent_options;
  consent_options.on_consent = [metrics](absl::string_view flow, absl::string_view result) {
    metrics->CountConsent(flow, result);
  };
  // Several replicas: pending consents in the store, so that any replica
  // completes them.
  consent_options.shared = parts.membership != nullptr;
  graph.consent = std::make_unique<ConsentManager>(*parts.vault, parts.providers, *parts.clock, *parts.logger,
                                                   consent_options);
  graph.scheduler = std::make_unique<RefreshScheduler>(*graph.tokens, *parts.vault, *parts.clock, *parts.logger,
                                                       SchedulingOptions(parts, max_refreshes));
  graph.mail_pool =
      std::make_unique<MailPool>(*graph.tokens, *parts.vault, *parts.clock, *parts.logger, PoolOptions(parts));
  graph.mailbox_watches = std::make_unique<MailboxWatches>(*graph.mail_pool, *parts.clock, *parts.logger,
                                                           WatchOptions(parts));
  graph.diagnosis = std::make_unique<GrantDiagnosis>(*parts.vault, *graph.tokens, *parts.clock, PoolOptions(parts));

  // Whoever changes a grant (admin API, consent, a refresh the provider
  // refused, the reconciler of declared records, another replica), the
  // caches of it go at once.
  TokenManager* tokens = graph.tokens.get();
  MailPool* mail_pool = graph.mail_pool.get();
  MailboxWatches* watches = graph.mailbox_watches.get();
  Authorizer* authorizer = parts.authorizer;
  parts.vault->OnGrantChanged([tokens, mail_pool, watches, authorizer](absl::string_view grant, ChangeOrigin) {
    tokens->Forget(grant);
    mail_pool->Forget(grant);
    // A watch logs in again, so that a disabled grant stops being read.
    watches->Forget(grant);
    authorizer->ForgetGrant(grant);
  });
  // WatchGrants and the log lines of grant state changes.
  graph.grant_watch = std::make_unique<GrantWatch>(*parts.vault, *parts.clock, *parts.logger);
  GrantWatch* grant_watch = graph.grant_watch.get();
  parts.vault->OnGrantChanged(
      [grant_watch](absl::string_view grant, ChangeOrigin origin) { grant_watch->Notice(grant, origin); });

  graph.token_service =
      std::make_unique<TokenServiceImpl>(graph.tokens.get(), parts.guard, max_refreshes, parts.max_pending_calls);
  const auto& mc = parts.config->mail();
  MailServiceOptions mail_workers;
  if (mc.workers() > 0) mail_workers.workers = static_cast<int>(mc.workers());
  if (mc.stream_workers() > 0) mail_workers.stream_workers = static_cast<int>(mc.stream_workers());
  mail_workers.max_pending = parts.max_pending_calls;
  if (mc.watch_queue() > 0) mail_workers.watch_queue = mc.watch_queue();
  if (mc.has_get_message_threads()) mail_workers.get_message_threads = static_cast<int>(mc.get_message_threads());
  if (mc.has_fetch_message_threads()) {
    mail_workers.fetch_message_threads = static_cast<int>(mc.fetch_message_threads());
  }
  if (mc.has_get_message_threads_poll()) mail_workers.get_message_threads_poll = mc.get_message_threads_poll();
  graph.mail_service = std::make_unique<MailServiceImpl>(
      graph.mail_pool.get(), parts.guard, mail_workers, [metrics](uint64_t bytes) { metrics->CountFetchedBytes(bytes); },
      graph.mailbox_watches.get());
  AdminServiceDeps admin;
  admin.identity = parts.identity;
  admin.vault = parts.vault;
  admin.store = parts.store;
  admin.sealer = parts.sealer;
  admin.reload_keyring = parts.reload_keyring;
  admin.tokens = graph.tokens.get();
  admin.consent = graph.consent.get();
  admin.guard = parts.guard;
  admin.grant_watch = graph.grant_watch.get();
  admin.diagnosis = graph.diagnosis.get();
  graph.admin_service = std::make_unique<AdminServiceImpl>(std::move(admin));
  return graph;
}

}  // namespace tokenbroker
