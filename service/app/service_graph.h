// The composition root of the broker's services: BuildServiceGraph makes the
// token manager, consent, the refresh scheduler, the mail pool, the mailbox
// watches, the grant watch and the three
// gRPC services from the parts below them, wires their metrics, and
// subscribes the caches to the vault's "grant changed" notification. The
// daemon (Broker) and the tests' in-process server both call it, so tests run
// the graph the daemon runs. Nothing is started here: Broker starts the
// background work after the gRPC server is up.
#ifndef TOKENBROKER_SERVICE_APP_SERVICE_GRAPH_H_
#define TOKENBROKER_SERVICE_APP_SERVICE_GRAPH_H_

#include <functional>
#include <map>
#include <memory>

#include "service/api/admin_service.h"
#include "service/api/call_guard.h"
#include "service/api/mail_service.h"
#include "service/api/token_service.h"
#include "service/authz/authorizer.h"
#include "service/common/clock.h"
#include "service/config/config_loader.h"
#include "service/consent/consent_manager.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/mail/grant_diagnosis.h"
#include "service/mail/mail_pool.h"
#include "service/mail/mailbox_watch.h"
#include "service/metrics/metrics.h"
#include "service/tokens/refresh_scheduler.h"
#include "service/tokens/replica_membership.h"
#include "service/tokens/token_manager.h"
#include "service/vault/grant_watch.h"
#include "service/vault/vault.h"

namespace tokenbroker {

// What the graph is built from; every pointer must outlive the graph.
struct ServiceGraphParts {
  const Config* config = nullptr;  // tokens, mail (the rest is Broker's)
  Vault* vault = nullptr;
  CredentialStore* store = nullptr;
  Sealer* sealer = nullptr;
  std::map<Provider, IdentityProvider*> providers;
  const Clock* clock = nullptr;
  Logger* logger = nullptr;
  Metrics* metrics = nullptr;
  Authorizer* authorizer = nullptr;
  CallGuard* guard = nullptr;
  // Several replicas on PostgreSQL; null for one process.
  ReplicaMembership* membership = nullptr;
  absl::Duration lease_ttl = absl::Seconds(30);
  ServerIdentity identity;
  // Re-reads the keyring file (RotateKeys); may be null.
  std::function<absl::Status()> reload_keyring;
  // Calls waiting for a refresh or mail worker, at most (tests set it low).
  size_t max_pending_calls = 10000;
};

struct ServiceGraph {
  // Declared in build order; destroyed services first.
  std::unique_ptr<TokenManager> tokens;
  std::unique_ptr<ConsentManager> consent;
  std::unique_ptr<RefreshScheduler> scheduler;
  std::unique_ptr<MailPool> mail_pool;
  std::unique_ptr<MailboxWatches> mailbox_watches;
  std::unique_ptr<GrantWatch> grant_watch;
  std::unique_ptr<GrantDiagnosis> diagnosis;
  std::unique_ptr<TokenServiceImpl> token_service;
  std::unique_ptr<MailServiceImpl> mail_service;
  std::unique_ptr<AdminServiceImpl> admin_service;
};

ServiceGraph BuildServiceGraph(const ServiceGraphParts& parts);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_APP_SERVICE_GRAPH_H_
