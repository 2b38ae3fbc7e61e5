// Several replicas on one PostgreSQL: what coordination costs and what it
// saves, against a single replica measured in the same run.
//
// N delegated grants on a real PostgreSQL; the Microsoft-shaped endpoint (in
// process) rotates refresh tokens and revokes a user whose consumed refresh
// token is presented again. Each "replica" is a TokenManager with its own
// connection pool and vault, as a separate tokenbrokerd would have.
//
// 1. Baseline: one replica refreshes every grant once (8 threads).
// 2. One coordinated replica does the same: the lease's cost per refresh
//    against the baseline.
// 3. Three coordinated replicas refresh every grant at the same time (8
//    threads each): provider requests per grant (target 1.00), refresh
//    tokens presented twice (target 0).
// 4. Three uncoordinated replicas (no leases), as before this work: requests
//    per grant and grants revoked for reuse.
// 5. Failover: a replica dies holding a grant's lease; another serves the
//    grant once the lease (2 s here) runs out.
//
// Usage: replica_bench [--quick]   (10,000 grants; --quick: 300)
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "service/idp/microsoft_provider.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/tokens/token_manager.h"
#include "tests/support/credentials.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/postgres_server.h"

namespace tokenbroker {
namespace {

constexpr char kTenant[] = "contoso.onmicrosoft.com";
constexpr char kClientId[] = "11111111-2222-3333-4444-555555555555";

void Check(const absl::Status& s, const std::string& what = "") {
  if (!s.ok()) {
    std::fprintf(stderr, "replica_bench: %s%s\n", what.c_str(), std::string(s.message()).c_str());
    std::exit(1);
  }
}

// One tokenbrokerd's worth: its own pool, vault and token manager.
struct Replica {
  Replica(const std::string& dsn, Sealer& sealer, testing::FakeMicrosoft& idp, Logger& logger, bool coordinated,
          const std::string& id)
      : store(std::move(*PostgresBackend::Open(Secret::CopyFrom(dsn), 4, PostgresMigrations()))),
        vault(store, sealer, SystemClock::Get()),
        microsoft(idp, SystemClock::Get()) {
    TokenManagerOptions options;
    options.replicas.enabled = coordinated;
    options.replicas.replica_id = id;
    options.replicas.lease_ttl = absl::Seconds(2);
    tokens = std::make_unique<TokenManager>(vault, std::map<Provider, IdentityProvider*>{{Provider::kMicrosoft, &microsoft}},
                                            SystemClock::Get(), logger, std::move(options));
  }
  SqlCredentialStore store;
  Vault vault;
  MicrosoftProvider microsoft;
  std::unique_ptr<TokenManager> tokens;
};

// Refreshes every grant of `prefix` on each replica at once (8 threads each);
// returns the wall time and counts failures.
absl::Duration RefreshAll(std::vector<Replica*> replicas, const std::string& prefix, int grants, int* failures) {
  std::atomic<int> failed{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (Replica* r : replicas) {
    auto next = std::make_shared<std::atomic<int>>(0);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([r, next, &prefix, grants, &failed] {
        for (int g = (*next)++; g < grants; g = (*next)++) {
          if (!r->tokens->RefreshNow(absl::StrCat(prefix, g)).ok()) ++failed;
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  *failures = failed;
  return absl::Now() - start;
}

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  using namespace tokenbroker;
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int grants = quick ? 300 : 10000;
  auto server = testing::PostgresServer::Start();
  Check(server.status(), "PostgreSQL: ");
  const std::string dsn = (*server)->Dsn(*(*server)->CreateDatabase());
  Sealer sealer(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now())));
  testing::FakeMicrosoft idp(SystemClock::Get());
  idp.RegisterApp(kTenant, kClientId, "the-secret");
  idp.SetReuseRevokes(true);
  Logger logger(LogLevel::kError);

  Replica single(dsn, sealer, idp, logger, false, "single");
  App app;
  app.id = "contoso";
  app.tenant = kTenant;
  app.client_id = kClientId;
  Check(single.vault.CreateApp(app, testing::ClientSecretCredentials("s1", "the-secret", absl::Now() + absl::Hours(24)))
            .status());
  for (const char* set : {"base-", "lease-", "coord-", "free-"}) {
    for (int g = 0; g < grants; ++g) {
      const std::string id = absl::StrCat(set, g);
      idp.AddRefreshToken(absl::StrCat("0.rt-", id), id);
      Grant spec;
      spec.id = id;
      spec.app = "contoso";
      spec.mailbox = id + "@contoso.com";
      Check(single.vault.ImportGrant(spec, Secret::CopyFrom(absl::StrCat("0.rt-", id))).status());
    }
  }
  std::printf("replica_bench: %d delegated grants, refresh tokens rotating with reuse revocation, one PostgreSQL\n",
              grants);

  int failures = 0;
  int before = idp.requests();
  const absl::Duration base = RefreshAll({&single}, "base-", grants, &failures);
  const double base_us = absl::ToDoubleMicroseconds(base) / grants;
  std::printf("  1 replica (baseline)       %6.2f provider requests per grant, %7.0f us per grant, %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, base_us, failures);

  Replica a(dsn, sealer, idp, logger, true, "replica-a"), b(dsn, sealer, idp, logger, true, "replica-b"),
      c(dsn, sealer, idp, logger, true, "replica-c");
  // The same work as the baseline, under leases and with the token shared:
  // what coordination costs per refresh.
  before = idp.requests();
  const absl::Duration leased = RefreshAll({&a}, "lease-", grants, &failures);
  const double lease_us = absl::ToDoubleMicroseconds(leased) / grants;
  std::printf("  1 replica, coordinated     %6.2f provider requests per grant, %7.0f us per grant (%.2fx the "
              "baseline: lease, re-read, shared token, release), %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, lease_us, lease_us / base_us, failures);
  before = idp.requests();
  int reused = idp.reused_refresh_tokens();
  const absl::Duration coordinated = RefreshAll({&a, &b, &c}, "coord-", grants, &failures);
  const double coord_us = absl::ToDoubleMicroseconds(coordinated) / grants;
  std::printf("  3 replicas, coordinated    %6.2f provider requests per grant, %7.0f us per grant (all three "
              "asking for every grant at once), %d refresh tokens presented twice, %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, coord_us,
              idp.reused_refresh_tokens() - reused, failures);

  Replica x(dsn, sealer, idp, logger, false, "x"), y(dsn, sealer, idp, logger, false, "y"),
      z(dsn, sealer, idp, logger, false, "z");
  before = idp.requests();
  reused = idp.reused_refresh_tokens();
  const absl::Duration free = RefreshAll({&x, &y, &z}, "free-", grants, &failures);
  std::printf("  3 replicas, uncoordinated  %6.2f provider requests per grant, %7.0f us per grant, %d refresh tokens "
              "presented twice (each revokes its grant), %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, absl::ToDoubleMicroseconds(free) / grants,
              idp.reused_refresh_tokens() - reused, failures);

  // Failover: replica-c "dies" holding the lease of coord-0 (taken, never
  // released); replica-a serves the grant once the lease runs out.
  absl::StatusOr<RefreshLease> dead = c.store.AcquireRefreshLease("coord-0", "replica-c", absl::Seconds(2));
  Check(dead.status());
  const absl::Time asked = absl::Now();
  absl::StatusOr<AccessToken> served = a.tokens->GetAccessToken("coord-0", absl::Hours(2));  // forces a refresh
  std::printf("  failover after a replica died holding a lease of 2 s: served after %.2f s (%s)\n",
              absl::ToDoubleSeconds(absl::Now() - asked), served.ok() ? "ok" : std::string(served.status().message()).c_str());
  return 0;
}
