// The credential vault end to end: tokenbrokerctl against the real
// tokenbrokerd, on SQLite and on a real PostgreSQL.
#include <signal.h>
#include <sqlite3.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/broker_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/crypto/sealer.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "service/vault/vault.h"
#include "tests/support/daemon.h"
#include "tests/support/postgres_server.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;
using testing::RunningDaemon;
using testing::TempDir;

constexpr char kClientSecret[] = "Qx8~client-SECRET-value.4711";
constexpr char kRefreshToken[] = "0.AXkA-refresh-TOKEN-must-never-leak-42";


// The fixture; the store kind comes from the subclass.
class VaultE2EBase : public ::testing::Test {
 protected:
  virtual std::string StoreKind() const { return "sqlite"; }

  void SetUp() override {
    std::string store;
    if (StoreKind() == "postgres") {
      database_ = *testing::SharedPostgresServer().CreateDatabase();
      const std::string dsn_file = dir_.WriteFile("secrets/pg.dsn", testing::SharedPostgresServer().Dsn(database_) + "\n");
      store = absl::StrCat("store:\n  postgres:\n    dsn_file: \"", dsn_file, "\"\n");
    }
    config_ = dir_.WriteFile("broker.yaml", testing::DaemonConfig(dir_, "  create_if_missing: true\n", "5s", store));
    cert_ = testing::MakeSelfSignedCertificate(dir_, "contoso-imap", 400);
    secret_file_ = dir_.WriteFile("client-secret", kClientSecret);
    refresh_file_ = dir_.WriteFile("refresh-token", std::string(kRefreshToken) + "\n");
  }

  void Start() {
    daemon_ = testing::StartDaemon(config_, dir_.path());
    ASSERT_FALSE(daemon_.grpc_address.empty());
  }
  void Stop() { EXPECT_EQ(daemon_.Stop(), 0) << daemon_.process->Stderr(); }
  CommandResult Ctl(const std::vector<std::string>& args) { return testing::Ctl(daemon_.grpc_address, args); }
  CommandResult MustCtl(const std::vector<std::string>& args) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.err;
    return r;
  }

  void EnrolEverything() {
    // The client secret arrives on standard input.
    CommandResult r = testing::RunCommand(
        {"/bin/sh", "-c",
         absl::StrCat("\"$0\" --target \"$1\" app create contoso --provider microsoft --tenant contoso.onmicrosoft.com "
                      "--client-id 11111111-2222-3333-4444-555555555555 --client-secret-file - --not-after 2027-06-30 "
                      "< \"$2\""),
         testing::CtlPath(), daemon_.grpc_address, secret_file_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    MustCtl({"app", "create", "contoso-cert", "--provider", "microsoft", "--tenant", "contoso.onmicrosoft.com",
             "--client-id", "22222222-2222-3333-4444-555555555555", "--certificate", cert_.certificate,
             "--private-key", cert_.private_key});
    MustCtl({"grant", "import", "support", "--app", "contoso", "--mailbox", "support@contoso.com",
             "--refresh-token-file", refresh_file_});
    MustCtl({"grant", "create", "robot", "--app", "contoso-cert", "--mailbox", "robot@contoso.com"});
  }

  // Every secret this test handed to the broker, as it could appear anywhere.
  std::vector<std::string> Secrets() {
    std::vector<std::string> out = {kClientSecret, kRefreshToken};
    // Every base64 line of the private key.
    for (absl::string_view line : absl::StrSplit(testing::ReadFile(cert_.private_key), '\n')) {
      if (line.size() > 40 && !absl::StartsWith(line, "-----")) out.emplace_back(line);
    }
    return out;
  }

  TempDir dir_;
  std::string database_;
  std::string config_;
  testing::CertificateFiles cert_;
  std::string secret_file_;
  std::string refresh_file_;
  RunningDaemon daemon_;
};

class VaultE2ETest : public VaultE2EBase, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string StoreKind() const override { return GetParam(); }
};

TEST_P(VaultE2ETest, AppsAndGrantsSurviveARestartAndNoSecretLeaksAnywhere) {
  Start();
  EnrolEverything();
  CommandResult show = MustCtl({"app", "show", "contoso-cert"});
  EXPECT_THAT(show.out, HasSubstr("x5t#S256"));
  EXPECT_THAT(show.out, HasSubstr("subject   O=tokenbroker tests,CN=contoso-imap"));
  EXPECT_THAT(show.out, HasSubstr("(in 399 days)"));
  CommandResult secret_app = MustCtl({"app", "show", "contoso"});
  EXPECT_THAT(secret_app.out, HasSubstr("secret-1             client_secret        expires 2027-06-30T00:00:00Z"));
  const std::string json = MustCtl({"--output", "json", "app", "list"}).out;
  EXPECT_THAT(json, HasSubstr("\"thumbprint_sha256\""));
  const std::string grants = MustCtl({"grant", "list"}).out;
  EXPECT_THAT(grants, HasSubstr("support@contoso.com"));
  EXPECT_THAT(grants, HasSubstr("robot@contoso.com"));

  Stop();
  Start();
  EXPECT_EQ(MustCtl({"app", "show", "contoso-cert"}).out, show.out);
  EXPECT_EQ(MustCtl({"grant", "list"}).out, grants);
  // Every value still opens after the restart (rotation opens them all).
  EXPECT_THAT(MustCtl({"keys", "rotate"}).out, HasSubstr("re-sealed:  3 value(s)"));

  // Look for every secret in every place it must never be.
  std::vector<std::pair<std::string, std::string>> places = {
      {"daemon log", daemon_.process->Stderr()},
      {"metrics", *testing::HttpGet(daemon_.metrics_address, "/metrics")},
      {"app show", show.out + secret_app.out + json},
      {"grant show", MustCtl({"--output", "json", "grant", "show", "support"}).out},
  };
  Stop();
  places.push_back({"daemon log after stop", daemon_.process->Stderr()});
  if (GetParam() == "sqlite") {
    for (const char* file : {"var/tokenbroker.db", "var/tokenbroker.db-wal", "var/tokenbroker.db-shm"}) {
      places.push_back({file, testing::ReadFile(dir_.File(file))});
    }
    ASSERT_GT(places.back().second.size() + places[places.size() - 3].second.size(), 0u);
  } else {
    CommandResult dump = testing::SharedPostgresServer().RunClient("pg_dump", {"--data-only"}, database_);
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    ASSERT_THAT(dump.out, HasSubstr("support@contoso.com"));  // the dump has the rows
    places.push_back({"pg_dump", dump.out});
  }
  for (const auto& [where, text] : places) {
    for (const std::string& secret : Secrets()) {
      EXPECT_THAT(text, Not(HasSubstr(secret))) << "a secret appears in " << where;
    }
  }
}

TEST_P(VaultE2ETest, AKilledBrokerLosesNoAcknowledgedWrite) {
  Start();
  EnrolEverything();
  ClientOptions options;
  options.target = daemon_.grpc_address;
  options.max_attempts = 1;
  auto client = *BrokerClient::Create(options);

  // The client imports grants and keeps replacing their refresh tokens; it
  // records what the broker acknowledged, and what was in flight when the
  // broker died.
  absl::Mutex mu;
  std::map<std::string, std::string> acknowledged;
  std::map<std::string, std::string> in_flight;
  int acks = 0;
  bool writer_ended = false;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      const std::string grant = absl::StrCat("g", i % 40);
      const std::string token = absl::StrCat("rt-", i, "-", grant);
      {
        absl::MutexLock lock(&mu);
        in_flight[grant] = token;
      }
      v1::ImportGrantRequest request;
      request.mutable_grant()->set_id(grant);
      request.mutable_grant()->set_app("contoso");
      request.mutable_grant()->set_mailbox(grant + "@contoso.com");
      request.set_refresh_token(token);
      request.set_replace(i >= 40);  // the first round creates the 40 grants
      v1::Grant response;
      auto context = client->NewContext();
      if (!client->admin().ImportGrant(context.get(), request, &response).ok()) break;
      absl::MutexLock lock(&mu);
      acknowledged[grant] = token;
      ++acks;
    }
    absl::MutexLock lock(&mu);
    writer_ended = true;
  });
  bool enough = false;
  {
    // 150 acknowledged writes, unless the writer stopped on an error first.
    absl::MutexLock lock(&mu);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return acks >= 150 || writer_ended; };
    mu.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(120));
    enough = acks >= 150;
  }
  if (!enough) {
    stop = true;
    writer.join();
    FAIL() << "the writer stopped after " << acks << " acknowledged writes (150 expected)";
  }
  daemon_.process->Signal(SIGKILL);
  ASSERT_EQ(*daemon_.process->Wait(absl::Seconds(30)), 128 + SIGKILL);
  stop = true;
  writer.join();

  // The store opens cleanly: the broker starts and serves again.
  Start();
  EXPECT_THAT(MustCtl({"grant", "list"}).out, HasSubstr("g39"));
  Stop();

  // Open the store directly and check each refresh token.
  Sealer sealer(std::make_shared<const Keyring>(*Keyring::LoadFile(dir_.File("var/keyring.yaml"))));
  std::unique_ptr<SqlBackend> backend;
  if (GetParam() == "sqlite") {
    backend = std::make_unique<SqliteBackend>(*SqliteDatabase::Open(dir_.File("var/tokenbroker.db"), SqliteMigrations()));
  } else {
    backend = *PostgresBackend::Open(Secret::CopyFrom(testing::SharedPostgresServer().Dsn(database_)), 1, PostgresMigrations());
  }
  SqlCredentialStore store(std::move(backend));
  FakeClock clock;
  Vault vault(store, sealer, clock);
  absl::MutexLock lock(&mu);
  ASSERT_GE(acks, 150);
  for (const auto& [grant, token] : acknowledged) {
    absl::StatusOr<Grant> stored = vault.GetGrant(grant);
    ASSERT_TRUE(stored.ok()) << grant << ": " << stored.status();
    absl::StatusOr<Secret> opened = vault.OpenRefreshToken(*stored);
    ASSERT_TRUE(opened.ok()) << opened.status();
    // The newest acknowledged token, or the one whose acknowledgement the kill
    // swallowed: never an older one.
    EXPECT_THAT(std::string(opened->Reveal()), ::testing::AnyOf(token, in_flight[grant])) << grant;
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, VaultE2ETest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

class KeyringE2ETest : public VaultE2EBase {};

TEST_F(KeyringE2ETest, RotationResealsEveryRowAndTheOldKeyCanThenBeRemoved) {
  Start();
  EnrolEverything();
  const std::string keyring = dir_.File("var/keyring.yaml");
  const std::string old_key = *Keyring::LoadFile(keyring)->key_ids().begin();
  CommandResult added = MustCtl({"keys", "add-key", "--keyring-file", keyring});
  const std::string new_key = Keyring::LoadFile(keyring)->active_key_id();
  EXPECT_THAT(added.out, HasSubstr("added key " + new_key));
  CommandResult rotated = MustCtl({"keys", "rotate"});
  EXPECT_EQ(rotated.out, absl::StrCat("active key: ", new_key,
                                      "\nre-sealed:  3 value(s)\nold keys still in use: none (they can be removed "
                                      "from the keyring)\n"));
  EXPECT_THAT(MustCtl({"--output", "json", "version"}).out, HasSubstr(new_key));
  EXPECT_EQ(Ctl({"keys", "remove-key", "--keyring-file", keyring, new_key}).exit_code, 1);
  MustCtl({"keys", "remove-key", "--keyring-file", keyring, old_key});
  EXPECT_EQ(Keyring::LoadFile(keyring)->key_ids(), std::vector<std::string>{new_key});
  Stop();
  // Restarted with only the new key, every stored secret still opens.
  Start();
  EXPECT_THAT(MustCtl({"keys", "rotate"}).out, HasSubstr("re-sealed:  3 value(s)"));
}

TEST_F(KeyringE2ETest, ATamperedRowGivesAClearErrorNamingIt) {
  Start();
  EnrolEverything();
  Stop();
  {
    // Flip one byte of the client secret's ciphertext, as a disk error or an
    // attacker with write access to the file would.
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("var/tokenbroker.db").c_str(), &raw), SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    sqlite3_stmt* read = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT sealed_secret FROM app_credentials WHERE app_id = 'contoso'", -1,
                                 &read, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(read), SQLITE_ROW);
    std::string sealed(static_cast<const char*>(sqlite3_column_blob(read, 0)),
                       static_cast<size_t>(sqlite3_column_bytes(read, 0)));
    sqlite3_finalize(read);
    sealed[sealed.size() - 20] ^= 0x01;
    sqlite3_stmt* write = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.get(), "UPDATE app_credentials SET sealed_secret = ? WHERE app_id = 'contoso'", -1,
                                 &write, nullptr),
              SQLITE_OK);
    sqlite3_bind_blob(write, 1, sealed.data(), static_cast<int>(sealed.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(write), SQLITE_DONE);
    sqlite3_finalize(write);
  }
  Start();
  CommandResult r = Ctl({"keys", "rotate"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("tokenbrokerctl: DATA_LOSS: sealed value of app/contoso/credential/secret-1/secret"));
  EXPECT_THAT(r.err, HasSubstr("it was changed, copied from another record, or the key is wrong"));
  // The broker keeps serving everything else.
  EXPECT_EQ(Ctl({"health"}).out, "SERVING\n");
  Stop();
}

TEST_F(KeyringE2ETest, ADeclaredAppTakesARotatedSecretFileWithoutARestart) {
  const std::string secret = dir_.WriteFile("secrets/client-secret", "declared-secret-one\n");
  const std::string yaml = testing::ReadFile(config_) + absl::StrCat(
                                                            "declarations_check_interval: 100ms\n"
                                                            "apps:\n"
                                                            "  - id: declared\n"
                                                            "    provider: microsoft\n"
                                                            "    tenant: contoso.onmicrosoft.com\n"
                                                            "    client_id: c-declared\n"
                                                            "    credentials:\n"
                                                            "      - id: from-secret\n"
                                                            "        client_secret_file: \"",
                                                            secret,
                                                            "\"\n"
                                                            "        not_after: 2030-01-01\n"
                                                            "grants:\n"
                                                            "  - id: declared-robot\n"
                                                            "    app: declared\n"
                                                            "    mailbox: robot@contoso.com\n");
  dir_.WriteFile("broker.yaml", yaml);
  Start();
  EXPECT_THAT(daemon_.process->Stderr(),
              HasSubstr("\"msg\":\"declarations reconciled\",\"created\":2,\"updated\":0"));
  EXPECT_THAT(MustCtl({"app", "show", "declared"}).out, HasSubstr("app declared (microsoft, from config)"));
  CommandResult refused = Ctl({"app", "delete", "declared"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("FAILED_PRECONDITION: app \"declared\" is declared in the configuration file"));

  // The Secret is rotated (as Kubernetes does when its Secret changes).
  dir_.WriteFile("secrets/client-secret", "declared-secret-two\n");
  auto updated = daemon_.process->WaitForStderrLine(
      [](const std::string& l) { return l.find("\"updated\":1") != std::string::npos; }, absl::Seconds(30));
  ASSERT_TRUE(updated.has_value()) << daemon_.process->Stderr();
  Stop();

  Sealer sealer(std::make_shared<const Keyring>(*Keyring::LoadFile(dir_.File("var/keyring.yaml"))));
  auto db = SqliteDatabase::Open(dir_.File("var/tokenbroker.db"), SqliteMigrations());
  SqlCredentialStore store(std::make_unique<SqliteBackend>(std::move(*db)));
  FakeClock clock;
  Vault vault(store, sealer, clock);
  App app = *vault.GetApp("declared");
  EXPECT_EQ(vault.OpenCredentialSecret(app, app.credentials[0])->Reveal(), "declared-secret-two");
  EXPECT_THAT(daemon_.process->Stderr(), Not(HasSubstr("declared-secret")));
}

TEST_F(KeyringE2ETest, ADeclaredAppWithAMissingSecretFileStopsStartUp) {
  dir_.WriteFile("broker.yaml", testing::ReadFile(config_) +
                                    "apps:\n  - id: broken\n    provider: microsoft\n    tenant: t\n"
                                    "    client_id: c\n    credentials:\n      - id: s\n"
                                    "        client_secret_file: /nonexistent/secret\n        not_after: 2030-01-01\n");
  CommandResult r = testing::RunCommand({testing::DaemonPath(), "--config", config_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("start-up step reconcile-declarations failed: configuration "
                               "apps[0].credentials[0].client_secret_file: cannot open /nonexistent/secret"));
}

}  // namespace
}  // namespace tokenbroker
