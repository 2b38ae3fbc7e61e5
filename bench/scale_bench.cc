// A broker with many grants (100,000; --quick: 5,000), app-only and
// delegated mixed over ten tenants, on SQLite and on PostgreSQL: the real
// tokenbrokerd against the Microsoft-shaped identity provider over HTTPS.
// For each store it measures, beside the baseline of the same daemon over an
// empty store started in the same run:
//   - start-up: from exec to serving (the grant watch reads every grant);
//   - resident memory after start-up, and after every grant got a token;
//   - a cold start: every grant asks for a token at once (16 callers): the
//     provider requests it costs (app-only grants share their app's token),
//     the busiest second of one tenant against tokens.tenant_requests_per_second,
//     and how long until every grant had its token;
//   - a /metrics scrape with metrics.omit_per_grant (time and size);
//   - ListGrants through every page;
//   - enrolling grants through tokenbrokerctl (on the empty store's broker):
//     `grant create --from-file` (one process, calls in flight) against the
//     baseline of one `grant create` process per grant.
// Targets (issue 13): resident memory under 256 MB, start-up under 10 s,
// /metrics under 100 ms and 1 MB. With --svg=DIR it writes DIR/scale-<store>.svg:
// provider requests per second of each tenant during the cold start.
//
// Usage: scale_bench [--quick] [--store=sqlite|postgres] [--svg=DIR]
//        (needs tokenbrokerd; PostgreSQL from the test dependencies)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/svg_chart.h"
#include "client/broker_client.h"
#include "service/crypto/keyring.h"
#include "service/crypto/sealer.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "service/vault/vault.h"
#include "tests/support/credentials.h"
#include "tests/support/daemon.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"
#include "tests/support/postgres_server.h"

namespace tokenbroker {
namespace {

constexpr int kTenants = 10;
// One grant in this many is delegated (its own refresh token, its own
// provider request); the others are app-only.
constexpr int kDelegatedEvery = 10;
constexpr double kTenantRate = 50;  // tokens.tenant_requests_per_second (the default)

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "scale_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
    std::exit(1);
  }
}

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string Tenant(int t) { return absl::StrCat("tenant", t, ".onmicrosoft.com"); }
// Grant i is in tenant i % kTenants; one in kDelegatedEvery of each tenant's
// grants is delegated, so that every tenant has its share of them.
bool Delegated(int i) { return (i / kTenants) % kDelegatedEvery == 0; }
int DelegatedCount(int grants) {
  int n = 0;
  for (int i = 0; i < grants; ++i) n += Delegated(i) ? 1 : 0;
  return n;
}
std::string GrantId(int i) { return absl::StrCat("g", 1000000 + i); }

struct Result {
  int grants = 0;
  double fill_s = 0;
  double start_s = 0, start_empty_s = 0;
  uint64_t rss_start = 0, rss_empty = 0, rss_tokens = 0, anon_start = 0;
  double cold_s = 0;
  int provider_requests = 0;
  int refused = 0;
  double busiest_tenant_second = 0;
  double metrics_ms = 0;
  size_t metrics_bytes = 0, metrics_empty_bytes = 0;
  double list_s = 0;
  int listed = 0;
  int enrolled_bulk = 0, enrolled_single = 0;
  double enrol_bulk_per_s = 0, enrol_single_per_s = 0;
  std::map<int, std::vector<double>> per_second;  // tenant -> requests in each second of the cold start
};

// The same identity provider, store kind and configuration for the empty
// baseline and the full store.
struct Bench {
  testing::TempDir& dir;
  testing::FakeMicrosoft& idp;
  std::string authority;
  std::string ca_file;
  bool postgres = false;
  testing::PostgresServer* pg = nullptr;

  // A configuration and a vault over a new store.
  struct Store {
    std::string config;
    std::unique_ptr<CredentialStore> store;
  };
  Store NewStore(const std::string& name) {
    const std::string keyring = dir.File(name + "-keyring.yaml");
    Check(Keyring::LoadOrCreate(keyring, true, absl::Now()).status(), "keyring");
    std::string store_section;
    Store s;
    if (postgres) {
      const std::string dsn = pg->Dsn(*pg->CreateDatabase());
      const std::string dsn_file = dir.WriteFile(name + "-dsn", dsn);
      store_section = absl::StrCat("store:\n  postgres:\n    dsn_file: \"", dsn_file, "\"\n");
      auto backend = PostgresBackend::Open(Secret::CopyFrom(dsn), 4, PostgresMigrations());
      Check(backend.status(), "PostgreSQL");
      s.store = std::make_unique<SqlCredentialStore>(std::move(*backend));
    } else {
      const std::string path = dir.File(name + ".db");
      store_section = absl::StrCat("store:\n  sqlite:\n    path: \"", path, "\"\n");
      auto db = SqliteDatabase::Open(path, SqliteMigrations());
      Check(db.status(), "SQLite");
      s.store = std::make_unique<SqlCredentialStore>(std::make_unique<SqliteBackend>(std::move(*db)));
    }
    s.config = dir.WriteFile(
        name + ".yaml",
        absl::StrCat("server:\n  grpc_address: 127.0.0.1:0\n  metrics_address: 127.0.0.1:0\n  plaintext: true\n",
                     store_section, "keys:\n  keyring_file: \"", keyring, "\"\nhttp:\n  ca_file: \"", ca_file,
                     "\"\nmetrics:\n  omit_per_grant: true\ntokens:\n  max_concurrent_refreshes: 16\n",
                     testing::kLocalAdminAuth));
    return s;
  }

  void Fill(CredentialStore& store, const std::string& keyring, int grants) {
    Sealer sealer(std::make_shared<const Keyring>(*Keyring::LoadFile(keyring)));
    Vault vault(store, sealer, SystemClock::Get());
    for (int t = 0; t < kTenants; ++t) {
      App app;
      app.id = absl::StrCat("app", t);
      app.tenant = Tenant(t);
      app.client_id = absl::StrCat("client-", t);
      app.authority_host = authority;
      Check(vault.CreateApp(app, testing::ClientSecretCredentials("s1", "s3cret", absl::Now() + absl::Hours(24 * 365)))
                .status(),
            "app");
    }
    for (int i = 0; i < grants; ++i) {
      Grant g;
      g.id = GrantId(i);
      g.app = absl::StrCat("app", i % kTenants);
      g.mailbox = absl::StrCat("user", i, "@", Tenant(i % kTenants));
      if (Delegated(i)) {
        g.kind = GrantKind::kDelegated;
        Check(vault.ImportGrant(g, Secret::CopyFrom(absl::StrCat("rt-", i))).status(), "delegated grant");
      } else {
        g.kind = GrantKind::kAppOnly;
        Check(vault.CreateGrant(g).status(), "app-only grant");
      }
    }
  }

  // Enrolment through the CLI, as an admin migrating mailboxes does it: a
  // fiftieth of `grants` app-only grants from one file, against a
  // thousandth created one `tokenbrokerctl` process each.
  void Enrol(const std::string& target, int grants, Result& r) {
    auto ctl = [&](const std::vector<std::string>& args) {
      testing::CommandResult c = testing::Ctl(target, args);
      Check(c.exit_code == 0 ? absl::OkStatus() : absl::InternalError(c.err), "tokenbrokerctl");
    };
    ctl({"app", "create", "enrol", "--provider", "microsoft", "--tenant", Tenant(0), "--client-id", "client-0",
         "--authority-host", authority, "--client-secret-file", dir.WriteFile("enrol-secret", "s3cret"),
         "--not-after", "2099-01-01"});
    r.enrolled_single = std::max(10, grants / 1000);
    auto single = std::chrono::steady_clock::now();
    for (int i = 0; i < r.enrolled_single; ++i) {
      ctl({"grant", "create", absl::StrCat("single-", i), "--app", "enrol", "--mailbox",
           absl::StrCat("single-", i, "@", Tenant(0))});
    }
    r.enrol_single_per_s = r.enrolled_single / Since(single);
    r.enrolled_bulk = std::max(500, grants / 50);
    std::string lines;
    for (int i = 0; i < r.enrolled_bulk; ++i) {
      absl::StrAppend(&lines, "{\"grant\": \"bulk-", i, "\", \"app\": \"enrol\", \"mailbox\": \"bulk-", i, "@",
                      Tenant(0), "\"}\n");
    }
    const std::string file = dir.WriteFile(postgres ? "enrol-pg.jsonl" : "enrol-sqlite.jsonl", lines);
    auto bulk = std::chrono::steady_clock::now();
    ctl({"grant", "create", "--from-file", file});
    r.enrol_bulk_per_s = r.enrolled_bulk / Since(bulk);
  }

  Result Run(int grants) {
    Result r;
    r.grants = grants;
    // The baseline: the same daemon over an empty store.
    {
      Store empty = NewStore("empty");
      empty.store.reset();
      const auto start = std::chrono::steady_clock::now();
      testing::RunningDaemon daemon = testing::StartDaemon(empty.config, dir.path());
      r.start_empty_s = Since(start);
      Check(daemon.grpc_address.empty() ? absl::InternalError("no address") : absl::OkStatus(), "empty broker");
      r.rss_empty = testing::ResidentBytes(daemon.process->pid());
      absl::StatusOr<std::string> text = testing::HttpGet(daemon.metrics_address, "/metrics");
      Check(text.status(), "/metrics");
      r.metrics_empty_bytes = text->size();
      Enrol(daemon.grpc_address, grants, r);
      daemon.Stop();
    }
    Store full = NewStore("full");
    const auto filling = std::chrono::steady_clock::now();
    Fill(*full.store, dir.File("full-keyring.yaml"), grants);
    r.fill_s = Since(filling);
    full.store.reset();

    const auto start = std::chrono::steady_clock::now();
    testing::RunningDaemon daemon = testing::StartDaemon(full.config, dir.path());
    r.start_s = Since(start);
    Check(daemon.grpc_address.empty() ? absl::InternalError("no address") : absl::OkStatus(), "broker");
    const pid_t pid = daemon.process->pid();
    r.rss_start = testing::ResidentBytes(pid);
    r.anon_start = testing::ProcessStatusBytes(pid, "RssAnon");

    // Cold start: every grant asks at once.
    ClientOptions options;
    options.target = daemon.grpc_address;
    std::unique_ptr<BrokerClient> client = *BrokerClient::Create(options);
    const int requests_before = idp.requests();
    std::atomic<int> next{0}, refused{0};
    const absl::Time cold_start = absl::Now();
    const auto cold = std::chrono::steady_clock::now();
    std::vector<std::thread> callers;
    for (int c = 0; c < 16; ++c) {
      callers.emplace_back([&] {
        for (int i = next++; i < grants; i = next++) {
          v1::GetAccessTokenRequest request;
          request.set_grant(GrantId(i));
          // A caller told to retry (its tenant's turn is too far away) does.
          for (int attempt = 0;; ++attempt) {
            v1::GetAccessTokenResponse response;
            std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Seconds(60));
            grpc::Status s = client->tokens().GetAccessToken(context.get(), request, &response);
            if (s.ok()) break;
            if (s.error_code() != grpc::StatusCode::UNAVAILABLE || attempt > 100) {
              std::fprintf(stderr, "scale_bench: GetAccessToken %s: %s\n", request.grant().c_str(),
                           s.error_message().c_str());
              std::exit(1);
            }
            ++refused;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
          }
        }
      });
    }
    for (auto& t : callers) t.join();
    r.cold_s = Since(cold);
    r.refused = refused;
    r.provider_requests = idp.requests() - requests_before;
    for (int t = 0; t < kTenants; ++t) {
      std::vector<double>& seconds = r.per_second[t];
      seconds.assign(static_cast<size_t>(r.cold_s) + 1, 0);
      for (absl::Time at : idp.TokenRequestTimes(Tenant(t))) {
        if (at < cold_start) continue;
        const size_t second = static_cast<size_t>(absl::ToDoubleSeconds(at - cold_start));
        if (second < seconds.size()) seconds[second] += 1;
      }
      r.busiest_tenant_second = std::max(r.busiest_tenant_second, *std::max_element(seconds.begin(), seconds.end()));
    }
    r.rss_tokens = testing::ResidentBytes(pid);

    // A scrape (the median of five).
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i) {
      const auto scrape = std::chrono::steady_clock::now();
      absl::StatusOr<std::string> text = testing::HttpGet(daemon.metrics_address, "/metrics");
      ms.push_back(Since(scrape) * 1000);
      Check(text.status(), "/metrics");
      r.metrics_bytes = text->size();
    }
    std::sort(ms.begin(), ms.end());
    r.metrics_ms = ms[ms.size() / 2];

    // Every page of ListGrants.
    const auto listing = std::chrono::steady_clock::now();
    v1::ListGrantsRequest list;
    do {
      v1::ListGrantsResponse page;
      std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Seconds(60));
      grpc::Status s = client->admin().ListGrants(context.get(), list, &page);
      Check(s.ok() ? absl::OkStatus() : absl::InternalError(s.error_message()), "ListGrants");
      r.listed += page.grants_size();
      list.set_page_token(page.next_page_token());
    } while (!list.page_token().empty());
    r.list_s = Since(listing);
    Check(daemon.Stop() == 0 ? absl::OkStatus() : absl::InternalError("exit code"), "stopping the broker");
    return r;
  }
};

void Print(const char* store, const Result& r) {
  const double mb = 1 << 20;
  std::printf("scale_bench on %s: %d grants (%d app-only, %d delegated) in %d tenants; filled in %.0f s\n", store,
              r.grants, r.grants - DelegatedCount(r.grants), DelegatedCount(r.grants), kTenants, r.fill_s);
  std::printf("  start-up to serving      %6.2f s   (empty store %.2f s; ratio %.1f)   target < 10 s\n", r.start_s,
              r.start_empty_s, r.start_s / r.start_empty_s);
  std::printf("  resident after start-up  %6.1f MB, %.1f MB of it heap  (empty store %.1f MB; +%.0f bytes a grant)\n",
              r.rss_start / mb, r.anon_start / mb, r.rss_empty / mb,
              (static_cast<double>(r.rss_start) - r.rss_empty) / r.grants);
  std::printf("  resident, every token cached %6.1f MB  (+%.0f bytes a grant over the empty store)   target < 256 MB\n",
              r.rss_tokens / mb, (static_cast<double>(r.rss_tokens) - r.rss_empty) / r.grants);
  std::printf("  cold start: every grant's token in %.1f s, %d provider requests (%.3f a grant; one a grant without "
              "app tokens shared), %d calls told to retry\n",
              r.cold_s, r.provider_requests, static_cast<double>(r.provider_requests) / r.grants, r.refused);
  std::printf("  busiest second of one tenant: %.0f provider requests (tenant rate %.0f/s, one second's burst on top)\n",
              r.busiest_tenant_second, kTenantRate);
  std::printf("  /metrics (omit_per_grant)  %6.2f ms  %zu bytes (empty store %zu)   target < 100 ms, < 1 MB\n",
              r.metrics_ms, r.metrics_bytes, r.metrics_empty_bytes);
  std::printf("  ListGrants, every page     %6.2f s   %d grants\n", r.list_s, r.listed);
  std::printf("  enrolling through tokenbrokerctl: --from-file %.0f grants/s (%d grants), one process a grant %.0f "
              "grants/s (%d grants): ratio %.1f (at that rate %d grants take %.0f s from a file, %.0f min one by one)\n",
              r.enrol_bulk_per_s, r.enrolled_bulk, r.enrol_single_per_s, r.enrolled_single,
              r.enrol_bulk_per_s / r.enrol_single_per_s, r.grants, r.grants / r.enrol_bulk_per_s,
              r.grants / r.enrol_single_per_s / 60);
}

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  using namespace tokenbroker;
  const BenchFlags flags = ParseBenchFlags(argc, argv);
  const bool quick = flags.quick;
  const std::string& svg_dir = flags.svg_dir;
  std::string only;
  for (const std::string& arg : flags.rest) {
    if (absl::StartsWith(arg, "--store=") && (arg.substr(8) == "sqlite" || arg.substr(8) == "postgres")) {
      only = arg.substr(8);
    } else {
      std::fprintf(stderr, "usage: scale_bench [--quick] [--store=sqlite|postgres] [--svg=DIR]\n");
      return 2;
    }
  }
  const int grants = quick ? 5000 : 100000;
  testing::TempDir dir;
  testing::FakeMicrosoft idp(SystemClock::Get());
  testing::CertificateFiles tls = testing::MakeSelfSignedCertificate(dir, "idp", 30, "rsa", "IP:127.0.0.1");
  testing::HttpsServer https(idp, "");
  Check(https.Start(tls.certificate, tls.private_key), "identity provider");
  const std::string authority = absl::StrCat("127.0.0.1:", https.port());
  idp.SetHost(authority);
  for (int t = 0; t < kTenants; ++t) idp.RegisterApp(Tenant(t), absl::StrCat("client-", t), "s3cret");
  for (int i = 0; i < grants; ++i) {
    if (!Delegated(i)) continue;
    idp.AddRefreshToken(absl::StrCat("rt-", i), absl::StrCat("user", i, "@", Tenant(i % kTenants)));
  }
  std::unique_ptr<testing::PostgresServer> pg;
  for (const std::string store : {"sqlite", "postgres"}) {
    if (!only.empty() && only != store) continue;
    Bench bench{dir, idp, authority, tls.certificate};
    if (store == "postgres") {
      auto server = testing::PostgresServer::Start();
      Check(server.status(), "PostgreSQL");
      pg = *std::move(server);
      bench.postgres = true;
      bench.pg = pg.get();
    }
    const Result r = bench.Run(grants);
    Print(store.c_str(), r);
    if (!svg_dir.empty()) {
      SvgChart chart(absl::StrCat("Cold start of ", r.grants, " grants on ", store,
                                  ": provider requests per second, one line per tenant"),
                     "seconds since every grant asked", "requests / s");
      for (const auto& [tenant, seconds] : r.per_second) {
        std::vector<std::pair<double, double>> points;
        for (size_t s = 0; s < seconds.size(); ++s) points.emplace_back(static_cast<double>(s), seconds[s]);
        chart.AddSeries(Tenant(tenant), points);
      }
      chart.AddLimit("tenant rate", kTenantRate);
      Check(chart.WriteFile(absl::StrCat(svg_dir, "/scale-", store, ".svg")), "writing the chart");
    }
  }
  https.Stop();
  return 0;
}
