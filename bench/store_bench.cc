// Store throughput with sealing, beside the unsealed baseline, for SQLite and
// a private PostgreSQL started by the benchmark.
//
//   reads:  GetGrant + open the sealed refresh token   vs  GetGrant alone
//   writes: seal a new refresh token + CAS write        vs  CAS write of the plain bytes
//
// Every write is a durable commit (SQLite synchronous=FULL, PostgreSQL fsync).
// Usage: store_bench [--quick] [--svg=DIR]   (DIR/store.svg: the ratios)
#include <chrono>
#include <cstdio>
#include <functional>

#include "absl/strings/str_cat.h"
#include "bench/svg_chart.h"
#include "service/crypto/sealer.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "service/vault/vault.h"
#include "tests/support/credentials.h"
#include "tests/support/postgres_server.h"

namespace tokenbroker {
namespace {

constexpr int kGrants = 100;

double OpsPerSecond(int ops, const std::function<void(int)>& op) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < ops; ++i) op(i);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ops / seconds;
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "store_bench: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

struct Ratios {
  double reads = 0, writes = 0;  // sealed / unsealed
};

Ratios Run(const char* name, CredentialStore& store, int reads, int writes) {
  auto ring = Keyring::Generate(absl::Now());
  Sealer sealer(std::make_shared<const Keyring>(std::move(*ring)));
  FakeClock clock(absl::Now());
  Vault vault(store, sealer, clock);
  App app;
  app.id = "bench";
  app.tenant = "contoso.onmicrosoft.com";
  app.client_id = "c";
  std::vector<CredentialInput> inputs = testing::ClientSecretCredentials("s", "client-secret", clock.Now() + absl::Hours(1000));
  Check(vault.CreateApp(app, std::move(inputs)).status());
  const std::string token(1200, 'r');  // Microsoft refresh tokens are about 1-2 KB
  for (int i = 0; i < kGrants; ++i) {
    Grant g;
    g.id = absl::StrCat("g", i);
    g.app = "bench";
    g.mailbox = absl::StrCat("user", i, "@contoso.com");
    Check(vault.ImportGrant(g, Secret::CopyFrom(token)).status());
  }

  // Warm caches and connections first, so neither column pays for it.
  OpsPerSecond(reads / 4, [&](int i) { Check(store.GetGrant(absl::StrCat("g", i % kGrants)).status()); });
  const double sealed_reads = OpsPerSecond(reads, [&](int i) {
    absl::StatusOr<Grant> g = vault.GetGrant(absl::StrCat("g", i % kGrants));
    Check(g.status());
    Check(vault.OpenRefreshToken(*g).status());
  });
  const double plain_reads = OpsPerSecond(reads, [&](int i) {
    Check(store.GetGrant(absl::StrCat("g", i % kGrants)).status());
  });
  const double sealed_writes = OpsPerSecond(writes, [&](int i) {
    absl::StatusOr<Grant> g = store.GetGrant(absl::StrCat("g", i % kGrants));
    Check(g.status());
    Check(vault.StoreRefreshToken(*g, Secret::CopyFrom(token)).status());
  });
  const double plain_writes = OpsPerSecond(writes, [&](int i) {
    absl::StatusOr<Grant> g = store.GetGrant(absl::StrCat("g", i % kGrants));
    Check(g.status());
    g->sealed_refresh_token = token;
    Check(store.UpdateGrant(*g).status());
  });
  std::printf("%-9s reads/s  sealed %9.0f  unsealed %9.0f  ratio %.2f\n", name, sealed_reads, plain_reads,
              sealed_reads / plain_reads);
  std::printf("%-9s CAS writes/s sealed %6.0f  unsealed %9.0f  ratio %.2f\n", name, sealed_writes, plain_writes,
              sealed_writes / plain_writes);
  return {sealed_reads / plain_reads, sealed_writes / plain_writes};
}

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  using namespace tokenbroker;
  const BenchFlags flags = ParseBenchFlags(argc, argv);
  if (!flags.rest.empty()) {
    std::fprintf(stderr, "usage: store_bench [--quick] [--svg=DIR]\n");
    return 2;
  }
  const bool quick = flags.quick;
  Ratios sqlite, postgres;
  const int reads = quick ? 200 : 20000;
  const int writes = quick ? 20 : 1000;
  std::printf("store_bench: %d grants; %d reads and %d compare-and-swap writes per measurement; durable commits\n", kGrants,
              reads, writes);
  {
    testing::TempDir dir;
    auto db = SqliteDatabase::Open(dir.File("bench.db"), SqliteMigrations());
    Check(db.status());
    SqlCredentialStore store(std::make_unique<SqliteBackend>(std::move(*db)));
    sqlite = Run("sqlite", store, reads, writes);
  }
  {
    auto server = testing::PostgresServer::Start();
    Check(server.status());
    auto backend = PostgresBackend::Open(Secret::CopyFrom((*server)->Dsn()), 4, PostgresMigrations());
    Check(backend.status());
    SqlCredentialStore store(std::move(*backend));
    postgres = Run("postgres", store, reads, writes);
  }
  if (!flags.svg_dir.empty()) {
    SvgBarChart chart("Sealing refresh tokens: throughput sealed / unsealed, durable commits",
                      {"SQLite\nreads", "SQLite\nwrites", "PostgreSQL\nreads", "PostgreSQL\nwrites"},
                      "sealed / unsealed throughput");
    chart.AddSeries("sealed / unsealed", {sqlite.reads, sqlite.writes, postgres.reads, postgres.writes});
    chart.AddLimit("no cost", 1.0);
    Check(chart.WriteFile(flags.svg_dir + "/store.svg"));
  }
  return 0;
}
