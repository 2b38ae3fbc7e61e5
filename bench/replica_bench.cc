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
// 6. Background refreshes over one token lifetime of simulated time (one
//    scheduler pass a second on every replica), every grant's token issued
//    in the same second (the worst case): provider requests per grant per
//    lifetime and the peak second against the mean second of the refresh
//    window, for one replica and for three (each grant owned by one of them,
//    the others stepping in 2 minutes later if it has not been done).
//
// Usage: replica_bench [--quick] [--svg=DIR]   (10,000 grants; --quick: 300;
//        DIR/replicas.svg: provider requests per grant, parts 1-4)
#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bench/svg_chart.h"
#include "service/idp/microsoft_provider.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/tokens/refresh_scheduler.h"
#include "service/tokens/replica_membership.h"
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
    // Coordination is measured here, not per-tenant pacing (every grant is
    // in one tenant: 50 requests a second would be all it measured).
    options.pacing.requests_per_second = 0;
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

struct SchedulerResult {
  double requests_per_grant = 0;
  int peak = 0;
  double mean = 0;
  double wall_seconds = 0;
};

// Part 6 with `replicas` schedulers (1: no coordination, the baseline).
SchedulerResult BackgroundRefreshes(const std::string& dsn, Sealer& sealer, int grants, int replicas,
                                    const std::string& prefix) {
  FakeClock clock(absl::Now());
  testing::FakeMicrosoft idp(clock);
  idp.RegisterApp(kTenant, kClientId, "the-secret");
  idp.SetReuseRevokes(true);
  Logger logger(LogLevel::kError);
  struct Node {
    std::unique_ptr<SqlCredentialStore> store;
    std::unique_ptr<Vault> vault;
    std::unique_ptr<MicrosoftProvider> microsoft;
    std::unique_ptr<TokenManager> tokens;
    std::unique_ptr<ReplicaMembership> membership;
    std::unique_ptr<RefreshScheduler> scheduler;
  };
  std::vector<Node> nodes(replicas);
  for (int r = 0; r < replicas; ++r) {
    Node& n = nodes[r];
    n.store = std::make_unique<SqlCredentialStore>(
        std::move(*PostgresBackend::Open(Secret::CopyFrom(dsn), 4, PostgresMigrations())));
    n.vault = std::make_unique<Vault>(*n.store, sealer, clock);
    n.microsoft = std::make_unique<MicrosoftProvider>(idp, clock);
    TokenManagerOptions options;
    // Simulated time moves only between passes: pacing would wait for it.
    options.pacing.requests_per_second = 0;
    options.replicas.enabled = replicas > 1;
    options.replicas.replica_id = absl::StrCat(prefix, "replica-", r);
    options.replicas.lease_ttl = absl::Seconds(2);
    n.tokens = std::make_unique<TokenManager>(
        *n.vault, std::map<Provider, IdentityProvider*>{{Provider::kMicrosoft, n.microsoft.get()}}, clock, logger,
        std::move(options));
    SchedulerOptions scheduling;
    scheduling.keepalive_after = absl::ZeroDuration();
    if (replicas > 1) {
      n.membership = std::make_unique<ReplicaMembership>(*n.store, clock, logger, options.replicas.replica_id,
                                                         absl::Hours(1));
      scheduling.owns = [m = n.membership.get()](absl::string_view grant) { return m->Owns(grant); };
      scheduling.takeover_after = absl::Minutes(2);
    }
    n.scheduler = std::make_unique<RefreshScheduler>(*n.tokens, *n.vault, clock, logger, scheduling);
  }
  for (int pass = 0; pass < 2; ++pass) {
    for (Node& n : nodes) {
      if (n.membership != nullptr) Check(n.membership->Beat());
    }
  }
  App app;
  app.id = prefix + "app";
  app.tenant = kTenant;
  app.client_id = kClientId;
  Check(nodes[0].vault->CreateApp(app, testing::ClientSecretCredentials("s1", "the-secret", absl::Now() + absl::Hours(24)))
            .status());
  for (int g = 0; g < grants; ++g) {
    const std::string id = absl::StrCat(prefix, g);
    idp.AddRefreshToken(absl::StrCat("0.rt-", id), id);
    Grant spec;
    spec.id = id;
    spec.app = app.id;
    spec.mailbox = id + "@contoso.com";
    Check(nodes[0].vault->ImportGrant(spec, Secret::CopyFrom(absl::StrCat("0.rt-", id))).status());
    // Every replica serves every grant; every token issued in this second.
    for (Node& n : nodes) Check(n.tokens->GetAccessToken(id, absl::Minutes(5)).status());
  }
  const int before = idp.requests();
  const absl::Time start = absl::Now();
  std::vector<int> per_second;
  for (int second = 0; second < 3600; ++second) {
    clock.Advance(absl::Seconds(1));
    const int was = idp.requests();
    for (Node& n : nodes) n.scheduler->RunOnce();
    per_second.push_back(idp.requests() - was);
  }
  SchedulerResult result;
  result.wall_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int total = idp.requests() - before;
  result.requests_per_grant = static_cast<double>(total) / grants;
  size_t first = 0, last = 0;
  for (size_t i = 0; i < per_second.size(); ++i) {
    if (per_second[i] == 0) continue;
    if (result.peak == 0) first = i;
    last = i;
    result.peak = std::max(result.peak, per_second[i]);
  }
  result.mean = total > 0 ? static_cast<double>(total) / static_cast<double>(last - first + 1) : 0;
  Check(idp.reused_refresh_tokens() == 0 ? absl::OkStatus() : absl::InternalError("a refresh token was reused"));
  return result;
}

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  using namespace tokenbroker;
  const BenchFlags flags = ParseBenchFlags(argc, argv);
  if (!flags.rest.empty()) {
    std::fprintf(stderr, "usage: replica_bench [--quick] [--svg=DIR]\n");
    return 2;
  }
  const bool quick = flags.quick;
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
  // Parts 1-4 for the chart: provider requests, and refresh tokens presented
  // twice, per grant.
  std::vector<double> requests_per_grant, reused_per_grant;
  int before = idp.requests();
  int reused = idp.reused_refresh_tokens();
  auto record = [&] {
    requests_per_grant.push_back(static_cast<double>(idp.requests() - before) / grants);
    reused_per_grant.push_back(static_cast<double>(idp.reused_refresh_tokens() - reused) / grants);
  };
  const absl::Duration base = RefreshAll({&single}, "base-", grants, &failures);
  const double base_us = absl::ToDoubleMicroseconds(base) / grants;
  record();
  std::printf("  1 replica (baseline)       %6.2f provider requests per grant, %7.0f us per grant, %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, base_us, failures);

  Replica a(dsn, sealer, idp, logger, true, "replica-a"), b(dsn, sealer, idp, logger, true, "replica-b"),
      c(dsn, sealer, idp, logger, true, "replica-c");
  // The same work as the baseline, under leases and with the token shared:
  // what coordination costs per refresh.
  before = idp.requests();
  reused = idp.reused_refresh_tokens();
  const absl::Duration leased = RefreshAll({&a}, "lease-", grants, &failures);
  const double lease_us = absl::ToDoubleMicroseconds(leased) / grants;
  record();
  std::printf("  1 replica, coordinated     %6.2f provider requests per grant, %7.0f us per grant (%.2fx the "
              "baseline: lease, re-read, shared token, release), %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, lease_us, lease_us / base_us, failures);
  before = idp.requests();
  reused = idp.reused_refresh_tokens();
  const absl::Duration coordinated = RefreshAll({&a, &b, &c}, "coord-", grants, &failures);
  const double coord_us = absl::ToDoubleMicroseconds(coordinated) / grants;
  record();
  std::printf("  3 replicas, coordinated    %6.2f provider requests per grant, %7.0f us per grant (all three "
              "asking for every grant at once), %d refresh tokens presented twice, %d failed\n",
              static_cast<double>(idp.requests() - before) / grants, coord_us,
              idp.reused_refresh_tokens() - reused, failures);

  Replica x(dsn, sealer, idp, logger, false, "x"), y(dsn, sealer, idp, logger, false, "y"),
      z(dsn, sealer, idp, logger, false, "z");
  before = idp.requests();
  reused = idp.reused_refresh_tokens();
  const absl::Duration free = RefreshAll({&x, &y, &z}, "free-", grants, &failures);
  record();
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

  if (!flags.svg_dir.empty()) {
    SvgBarChart chart(absl::StrCat(grants, " delegated grants refreshed at once on one PostgreSQL"),
                      {"1 replica\n(baseline)", "1 replica,\ncoordinated", "3 replicas,\ncoordinated",
                       "3 replicas,\nuncoordinated"},
                      "per grant");
    chart.AddSeries("provider requests", requests_per_grant);
    chart.AddSeries("refresh tokens reused", reused_per_grant);
    chart.AddLimit("one request a grant", 1.0);
    Check(chart.WriteFile(flags.svg_dir + "/replicas.svg"));
  }

  std::printf("background refreshes over one token lifetime (simulated), every token issued in the same second:\n");
  for (int replicas : {1, 3}) {
    const SchedulerResult r = BackgroundRefreshes(dsn, sealer, grants, replicas, absl::StrCat("bg", replicas, "-"));
    std::printf("  %d replica%s  %.2f provider requests per grant per lifetime, peak %d refreshes per second, mean "
                "%.1f over the refresh window (peak/mean %.1f), wall %.1f s\n",
                replicas, replicas > 1 ? "s" : " ", r.requests_per_grant, r.peak, r.mean,
                r.mean > 0 ? r.peak / r.mean : 0.0, r.wall_seconds);
  }
  return 0;
}
