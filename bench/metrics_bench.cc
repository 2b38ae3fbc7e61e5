// The cost of a /metrics scrape at scale: the vault's series with per-grant
// series off (metrics.omit_per_grant: true, as a fleet of 100,000 grants
// runs), grants by state counted from the grant watch's memory, beside the
// baseline measured in the same run: the same scrape reading every grant
// from the store (what every scrape did before the grant watch kept counts).
// Over SQLite with durable commits. Also prints the scrape's size, the
// per-grant scrape for reference, and the heap the grant watch holds.
//
// Usage: metrics_bench [--quick] [--svg=DIR]   (100,000 grants; --quick: 5,000;
//        DIR/metrics.svg: the scrape times)
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/svg_chart.h"
#include "prometheus/text_serializer.h"
#include "service/app/vault_collector.h"
#include "service/crypto/sealer.h"
#include "service/logging/logger.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "service/vault/grant_watch.h"
#include "service/vault/vault.h"
#include "tests/support/credentials.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "metrics_bench: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

struct Scrape {
  double median_ms = 0;
  size_t bytes = 0;
};

// `rounds` scrapes: the median time of Collect plus serialising, and the size.
Scrape Measure(const VaultCollector& collector, int rounds) {
  std::vector<double> ms;
  size_t bytes = 0;
  for (int i = 0; i < rounds; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::string text = prometheus::TextSerializer().Serialize(collector.Collect());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    bytes = text.size();
  }
  std::sort(ms.begin(), ms.end());
  return Scrape{ms[ms.size() / 2], bytes};
}

size_t HeapBytes() { return mallinfo2().uordblks; }

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  using namespace tokenbroker;
  const BenchFlags flags = ParseBenchFlags(argc, argv);
  if (!flags.rest.empty()) {
    std::fprintf(stderr, "usage: metrics_bench [--quick] [--svg=DIR]\n");
    return 2;
  }
  const bool quick = flags.quick;
  const int grants = quick ? 5000 : 100000;
  const int rounds = quick ? 5 : 11;

  testing::TempDir dir;
  auto db = SqliteDatabase::Open(dir.File("bench.db"), SqliteMigrations());
  Check(db.status());
  SqlCredentialStore store(std::make_unique<SqliteBackend>(std::move(*db)));
  Sealer sealer(std::make_shared<const Keyring>(*Keyring::Generate(absl::Now())));
  FakeClock clock(absl::Now());
  Vault vault(store, sealer, clock);
  App app;
  app.id = "fleet";
  app.tenant = "contoso.onmicrosoft.com";
  app.client_id = "c";
  Check(vault.CreateApp(app, testing::ClientSecretCredentials("s", "client-secret", clock.Now() + absl::Hours(1000)))
            .status());
  const auto filling = std::chrono::steady_clock::now();
  for (int i = 0; i < grants; ++i) {
    Grant g;
    g.id = absl::StrCat("g", 100000 + i);
    g.app = "fleet";
    g.mailbox = absl::StrCat("user", i, "@contoso.com");
    g.kind = GrantKind::kAppOnly;
    Check(vault.CreateGrant(g).status());
  }
  const double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - filling).count();
  // Some grants in other states, as a fleet has.
  for (int i = 0; i < grants / 100; ++i) Check(vault.SetGrantEnabled(absl::StrCat("g", 100000 + i), false).status());

  Logger logger(LogLevel::kError, [](absl::string_view) {});
  const size_t heap_before = HeapBytes();
  const auto starting = std::chrono::steady_clock::now();
  GrantWatch watch(vault, clock, logger);
  watch.Start();  // reads every grant's state
  const double start_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - starting).count();
  const size_t watch_heap = HeapBytes() - heap_before;

  VaultCollector baseline(store, /*per_grant=*/false);
  VaultCollector counted(store, /*per_grant=*/false);
  counted.UseGrantCounts([&watch] { return watch.GrantCounts(); });
  VaultCollector per_grant(store, /*per_grant=*/true);

  const Scrape walked = Measure(baseline, rounds);
  const Scrape from_memory = Measure(counted, rounds);
  const Scrape every_grant = Measure(per_grant, quick ? 3 : 5);
  const std::string same = prometheus::TextSerializer().Serialize(baseline.Collect()) ==
                                   prometheus::TextSerializer().Serialize(counted.Collect())
                               ? "identical"
                               : "DIFFERENT";

  std::printf("metrics_bench: %d grants in SQLite (written in %.1f s, durable commits), median of %d scrapes\n", grants,
              fill_s, rounds);
  std::printf("  omit_per_grant, every grant read from the store (baseline): %8.2f ms  %7zu bytes\n", walked.median_ms,
              walked.bytes);
  std::printf("  omit_per_grant, grants by state from the grant watch:       %8.2f ms  %7zu bytes  (%.5f of the "
              "baseline's time, %.0fx faster; series %s)\n",
              from_memory.median_ms, from_memory.bytes, from_memory.median_ms / walked.median_ms,
              walked.median_ms / from_memory.median_ms, same.c_str());
  std::printf("  per-grant series on (for reference):                        %8.2f ms  %7zu bytes\n",
              every_grant.median_ms, every_grant.bytes);
  std::printf("  grant watch: read %d grants' states in %.0f ms at start; holds %.1f MB of heap (%.0f bytes a grant)\n",
              grants, start_ms, watch_heap / 1048576.0, static_cast<double>(watch_heap) / grants);
  if (!flags.svg_dir.empty()) {
    SvgBarChart chart(absl::StrCat("A /metrics scrape over ", grants, " grants (median of ", rounds, ")"),
                      {"omit_per_grant,\ncounts from memory", "omit_per_grant, every\ngrant from the store",
                       "per-grant series\n(for reference)"},
                      "milliseconds a scrape");
    chart.AddSeries("scrape time (ms)", {from_memory.median_ms, walked.median_ms, every_grant.median_ms});
    chart.AddLimit("target 100 ms", 100);
    Check(chart.WriteFile(flags.svg_dir + "/metrics.svg"));
  }
  return same == "identical" ? 0 : 1;
}
