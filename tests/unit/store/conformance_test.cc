// One suite, three stores: InMemoryCredentialStore, SQLite and a real
// PostgreSQL. Every CredentialStore must pass all of it.
#include <algorithm>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/secret.h"
#include "service/store/in_memory_credential_store.h"
#include "service/store/postgres_backend.h"
#include "service/store/postgres_schema.h"
#include "service/store/sql_credential_store.h"
#include "service/store/sqlite_backend.h"
#include "service/store/sqlite_schema.h"
#include "tests/support/postgres_server.h"

namespace tokenbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Opens (and reopens, as after a restart) one store under test.
class StoreFactory {
 public:
  virtual ~StoreFactory() = default;
  virtual std::unique_ptr<CredentialStore> Open() = 0;
};

class MemoryFactory : public StoreFactory {
 public:
  std::unique_ptr<CredentialStore> Open() override {
    // The same data on every open, as a restart of a durable store would.
    struct Shared final : CredentialStore {
      explicit Shared(InMemoryCredentialStore* s) : s(s) {}
      InMemoryCredentialStore* s;
      absl::string_view kind() const override { return s->kind(); }
      absl::Status CreateApp(const App& a) override { return s->CreateApp(a); }
      absl::StatusOr<App> GetApp(absl::string_view id) override { return s->GetApp(id); }
      absl::StatusOr<std::vector<App>> ListApps() override { return s->ListApps(); }
      absl::StatusOr<int64_t> UpdateApp(const App& a) override { return s->UpdateApp(a); }
      absl::Status DeleteApp(absl::string_view id, bool f) override { return s->DeleteApp(id, f); }
      absl::Status CreateGrant(const Grant& g) override { return s->CreateGrant(g); }
      absl::StatusOr<Grant> GetGrant(absl::string_view id) override { return s->GetGrant(id); }
      absl::StatusOr<std::vector<Grant>> ListGrants(const GrantFilter& f) override { return s->ListGrants(f); }
      absl::StatusOr<int64_t> UpdateGrant(const Grant& g) override { return s->UpdateGrant(g); }
      absl::Status DeleteGrant(absl::string_view id) override { return s->DeleteGrant(id); }
      absl::StatusOr<std::vector<SealedField>> ListSealedFields() override { return s->ListSealedFields(); }
      absl::StatusOr<bool> ReplaceSealedField(const SealedField& f, const std::string& r) override {
        return s->ReplaceSealedField(f, r);
      }
      absl::StatusOr<RefreshLease> AcquireRefreshLease(absl::string_view g, absl::string_view h,
                                                       absl::Duration t) override {
        return s->AcquireRefreshLease(g, h, t);
      }
      absl::Status ReleaseRefreshLease(const RefreshLease& l) override { return s->ReleaseRefreshLease(l); }
      absl::StatusOr<int64_t> UpdateGrantUnderLease(const Grant& g, const RefreshLease& l) override {
        return s->UpdateGrantUnderLease(g, l);
      }
      absl::StatusOr<std::optional<SharedAccessToken>> GetSharedAccessToken(absl::string_view g) override {
        return s->GetSharedAccessToken(g);
      }
      absl::Status PutSharedAccessToken(const SharedAccessToken& t, const RefreshLease& l) override {
        return s->PutSharedAccessToken(t, l);
      }
      absl::Status DeleteSharedAccessToken(absl::string_view g) override { return s->DeleteSharedAccessToken(g); }
      absl::Status PutPendingConsent(const PendingConsent& c) override { return s->PutPendingConsent(c); }
      absl::StatusOr<std::optional<PendingConsent>> GetPendingConsent(absl::string_view k) override {
        return s->GetPendingConsent(k);
      }
      absl::StatusOr<std::optional<PendingConsent>> TakePendingConsent(absl::string_view k) override {
        return s->TakePendingConsent(k);
      }
      absl::StatusOr<std::vector<PendingConsent>> ClaimDueDeviceConsents(absl::Time n, absl::Duration h) override {
        return s->ClaimDueDeviceConsents(n, h);
      }
      absl::StatusOr<bool> ReplacePendingConsent(const PendingConsent& c, const std::string& e) override {
        return s->ReplacePendingConsent(c, e);
      }
      absl::Status Heartbeat(absl::string_view id, absl::Time t) override { return s->Heartbeat(id, t); }
      absl::StatusOr<std::vector<ReplicaRecord>> LiveReplicas(absl::Duration w) override {
        return s->LiveReplicas(w);
      }
      absl::Status RemoveReplica(absl::string_view id) override { return s->RemoveReplica(id); }
      absl::Status PublishChange(absl::string_view c) override { return s->PublishChange(c); }
      absl::StatusOr<int64_t> AppendAuditEvent(const AuditEvent& e) override { return s->AppendAuditEvent(e); }
      absl::Status AppendAuditEvents(const std::vector<AuditEvent>& e) override { return s->AppendAuditEvents(e); }
      absl::StatusOr<std::vector<AuditEvent>> ListAuditEvents(const AuditFilter& f) override {
        return s->ListAuditEvents(f);
      }
      absl::StatusOr<int64_t> PruneAuditEvents(absl::Time t) override { return s->PruneAuditEvents(t); }
    };
    return std::make_unique<Shared>(&store_);
  }

 private:
  InMemoryCredentialStore store_;
};

class SqliteFactory : public StoreFactory {
 public:
  std::unique_ptr<CredentialStore> Open() override {
    auto db = SqliteDatabase::Open(dir_.File("store.db"), SqliteMigrations());
    EXPECT_TRUE(db.ok()) << db.status();
    return std::make_unique<SqlCredentialStore>(std::make_unique<SqliteBackend>(std::move(*db)));
  }

 private:
  testing::TempDir dir_;
};


class PostgresFactory : public StoreFactory {
 public:
  PostgresFactory() : database_(*testing::SharedPostgresServer().CreateDatabase()) {}
  std::unique_ptr<CredentialStore> Open() override {
    auto backend = PostgresBackend::Open(Secret::CopyFrom(testing::SharedPostgresServer().Dsn(database_)), 4, PostgresMigrations());
    EXPECT_TRUE(backend.ok()) << backend.status();
    return std::make_unique<SqlCredentialStore>(std::move(*backend));
  }

 private:
  std::string database_;
};

const absl::Time kT0 = absl::FromUnixMicros(1'795'776'000'123'456);

App SampleApp(const std::string& id) {
  App app;
  app.id = id;
  app.provider = Provider::kMicrosoft;
  app.tenant = "contoso.onmicrosoft.com";
  app.authority_host = "login.microsoftonline.com";
  app.client_id = "00000000-1111-2222-3333-444444444444";
  app.imap_host = "imap.example.test";
  app.imap_port = 993;
  app.imap_security = ImapSecurity::kStartTls;
  app.token_endpoint = "https://idp.test/token";
  app.assertion_algorithm = AssertionAlgorithm::kRs256;
  app.labels = {{"team", "support"}, {"env", "prod"}};
  app.create_time = kT0;
  app.update_time = kT0 + absl::Seconds(1);
  AppCredential secret;
  secret.id = "secret-2026";
  secret.kind = CredentialKind::kClientSecret;
  secret.not_after = kT0 + absl::Hours(24 * 365);
  secret.sealed_secret = std::string("TB\x01\x02k1\0\xff binary sealed", 22);
  secret.create_time = kT0;
  AppCredential cert;
  cert.id = "cert-a";
  cert.kind = CredentialKind::kCertificate;
  cert.thumbprint_sha1 = "sha1-thumb";
  cert.thumbprint_sha256 = "sha256-thumb";
  cert.subject = "CN=tokenbroker";
  cert.certificate_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  cert.sealed_secret = "sealed-key";
  cert.failing = true;
  cert.last_error = {"invalid_client", 700027, "certificate assertion rejected", kT0 + absl::Minutes(3)};
  app.credentials = {secret, cert};
  return app;
}

Grant SampleGrant(const std::string& id, const std::string& app) {
  Grant g;
  g.id = id;
  g.app = app;
  g.mailbox = "support@contoso.com";
  g.kind = GrantKind::kDelegated;
  g.scopes = {"offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"};
  g.state = GrantState::kNeedsReconsent;
  g.last_error = {"invalid_grant", 700082, "refresh token expired; consent again", kT0 + absl::Hours(1)};
  g.labels = {{"owner", "helpdesk"}};
  g.create_time = kT0;
  g.consent_time = kT0 + absl::Seconds(5);
  g.refresh_token_last_used_time = kT0 + absl::Seconds(6);
  g.sealed_refresh_token = std::string("sealed\0refresh", 14);
  return g;
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") factory_ = std::make_unique<MemoryFactory>();
    if (GetParam() == "sqlite") factory_ = std::make_unique<SqliteFactory>();
    if (GetParam() == "postgres") factory_ = std::make_unique<PostgresFactory>();
    store_ = factory_->Open();
  }
  std::unique_ptr<StoreFactory> factory_;
  std::unique_ptr<CredentialStore> store_;
};

TEST_P(ConformanceTest, AppsRoundTripEveryFieldAcrossAReopen) {
  App app = SampleApp("contoso");
  ASSERT_TRUE(store_->CreateApp(app).ok());
  app.version = 1;
  EXPECT_EQ(*store_->GetApp("contoso"), app);
  store_ = factory_->Open();
  EXPECT_EQ(*store_->GetApp("contoso"), app);
  EXPECT_EQ(store_->kind(), GetParam());
}

TEST_P(ConformanceTest, GrantsRoundTripEveryField) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  Grant g = SampleGrant("support", "contoso");
  ASSERT_TRUE(store_->CreateGrant(g).ok());
  g.version = 1;
  EXPECT_EQ(*store_->GetGrant("support"), g);
  Grant app_only;
  app_only.id = "robot";
  app_only.app = "contoso";
  app_only.mailbox = "robot@contoso.com";
  ASSERT_TRUE(store_->CreateGrant(app_only).ok());
  app_only.version = 1;
  store_ = factory_->Open();
  EXPECT_EQ(*store_->GetGrant("robot"), app_only);
  EXPECT_TRUE(store_->GetGrant("robot")->sealed_refresh_token.empty());
}

TEST_P(ConformanceTest, DuplicatesAndMissingRecordsHaveTheirCodes) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  absl::Status dup = store_->CreateApp(SampleApp("contoso"));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(dup.message(), "app \"contoso\" already exists");
  EXPECT_EQ(store_->GetApp("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetGrant("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteGrant("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteApp("nope", false).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  EXPECT_EQ(store_->CreateGrant(SampleGrant("g", "contoso")).code(), absl::StatusCode::kAlreadyExists);
  absl::Status orphan = store_->CreateGrant(SampleGrant("h", "missing-app"));
  EXPECT_EQ(orphan.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(orphan.message()), HasSubstr("app \"missing-app\" does not exist"));
}

TEST_P(ConformanceTest, ListsAreSortedAndFiltered) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("b-app")).ok());
  ASSERT_TRUE(store_->CreateApp(SampleApp("a-app")).ok());
  std::vector<std::string> ids;
  std::vector<App> apps = *store_->ListApps();
  for (const App& a : apps) ids.push_back(a.id);
  EXPECT_THAT(ids, ElementsAre("a-app", "b-app"));
  Grant g1 = SampleGrant("g1", "a-app");
  g1.state = GrantState::kActive;
  ASSERT_TRUE(store_->CreateGrant(g1).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g3", "b-app")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g2", "a-app")).ok());
  auto names = [](const std::vector<Grant>& gs) {
    std::vector<std::string> out;
    for (const Grant& g : gs) out.push_back(g.id);
    return out;
  };
  EXPECT_THAT(names(*store_->ListGrants({})), ElementsAre("g1", "g2", "g3"));
  EXPECT_THAT(names(*store_->ListGrants({"a-app", std::nullopt})), ElementsAre("g1", "g2"));
  EXPECT_THAT(names(*store_->ListGrants({"", GrantState::kActive})), ElementsAre("g1"));
  EXPECT_EQ(store_->ListGrants({"a-app", std::nullopt})->at(0).labels.at("owner"), "helpdesk");
}

TEST_P(ConformanceTest, GrantsComeInPagesByIdWithTheirLabels) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("a-app")).ok());
  ASSERT_TRUE(store_->CreateApp(SampleApp("b-app")).ok());
  for (int i = 0; i < 25; ++i) {
    Grant g = SampleGrant(absl::StrCat("g", i < 10 ? "0" : "", i), i % 5 == 0 ? "b-app" : "a-app");
    g.labels = {{"n", absl::StrCat(i)}};
    ASSERT_TRUE(store_->CreateGrant(g).ok());
  }
  std::vector<std::string> seen;
  GrantFilter page;
  page.app = "a-app";
  page.limit = 7;
  int pages = 0;
  while (true) {
    absl::StatusOr<std::vector<Grant>> grants = store_->ListGrants(page);
    ASSERT_TRUE(grants.ok()) << grants.status();
    ++pages;
    for (const Grant& g : *grants) {
      seen.push_back(g.id);
      EXPECT_EQ(g.labels.at("n"), std::to_string(std::stoi(g.id.substr(1)))) << "the labels of " << g.id;
      EXPECT_EQ(g.labels.size(), 1u);
    }
    if (grants->size() < page.limit) break;
    page.after_id = grants->back().id;
  }
  EXPECT_EQ(pages, 3);  // 20 grants of a-app: 7, 7, 6
  ASSERT_EQ(seen.size(), 20u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "g01");
  EXPECT_EQ(seen.back(), "g24");
  // A page after the last grant is empty.
  page.after_id = "g24";
  EXPECT_TRUE(store_->ListGrants(page)->empty());
}

TEST_P(ConformanceTest, UpdateAppIsCompareAndSwap) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  App a = *store_->GetApp("contoso");
  App stale = a;
  std::reverse(a.credentials.begin(), a.credentials.end());
  a.credentials.pop_back();
  a.labels = {{"only", "one"}};
  a.client_id = "new-client";
  EXPECT_EQ(*store_->UpdateApp(a), 2);
  App stored = *store_->GetApp("contoso");
  EXPECT_EQ(stored.version, 2);
  EXPECT_EQ(stored.client_id, "new-client");
  ASSERT_EQ(stored.credentials.size(), 1u);
  EXPECT_EQ(stored.credentials[0].id, "cert-a");
  EXPECT_EQ(stored.labels, a.labels);
  absl::StatusOr<int64_t> lost = store_->UpdateApp(stale);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(store_->GetApp("contoso")->client_id, "new-client");
  stale.id = "ghost";
  EXPECT_EQ(store_->UpdateApp(stale).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ConformanceTest, TwoWritersCanNeverOverwriteANewerRefreshToken) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  Grant first = *store_->GetGrant("g");
  Grant second = first;
  first.sealed_refresh_token = "rotated-by-first";
  second.sealed_refresh_token = "rotated-by-second";
  EXPECT_EQ(*store_->UpdateGrant(first), 2);
  absl::StatusOr<int64_t> lost = store_->UpdateGrant(second);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("was changed by someone else"));
  EXPECT_EQ(store_->GetGrant("g")->sealed_refresh_token, "rotated-by-first");
}

TEST_P(ConformanceTest, ConcurrentReadModifyWriteLosesNoUpdate) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  constexpr int kThreads = 4;
  constexpr int kWritesEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> aborted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWritesEach;) {
        Grant g = *store_->GetGrant("g");
        g.sealed_refresh_token = absl::StrCat("token-", t, "-", i);
        g.labels["count"] = absl::StrCat(std::stoi(g.labels.count("count") ? g.labels["count"] : "0") + 1);
        absl::StatusOr<int64_t> v = store_->UpdateGrant(g);
        if (v.ok()) {
          ++i;
        } else {
          ASSERT_EQ(v.status().code(), absl::StatusCode::kAborted) << v.status();
          ++aborted;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  Grant g = *store_->GetGrant("g");
  EXPECT_EQ(g.version, 1 + kThreads * kWritesEach);
  EXPECT_EQ(g.labels["count"], absl::StrCat(kThreads * kWritesEach));
}

TEST_P(ConformanceTest, DeletingAnAppInUseNeedsForce) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g2", "contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g1", "contoso")).ok());
  absl::Status refused = store_->DeleteApp("contoso", false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("is used by 2 grant(s) (g1, g2)"));
  EXPECT_TRUE(store_->GetGrant("g1").ok());
  EXPECT_TRUE(store_->DeleteApp("contoso", true).ok());
  EXPECT_EQ(store_->GetApp("contoso").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetGrant("g1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListSealedFields()->empty());
}

TEST_P(ConformanceTest, ADeletedGrantLeavesNothingBehind) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  ASSERT_TRUE(store_->DeleteGrant("g").ok());
  Grant fresh = SampleGrant("g", "contoso");
  fresh.labels.clear();
  ASSERT_TRUE(store_->CreateGrant(fresh).ok());
  EXPECT_TRUE(store_->GetGrant("g")->labels.empty());
  EXPECT_EQ(store_->GetGrant("g")->version, 1);
}

TEST_P(ConformanceTest, SealedFieldsAreListedAndReplacedOnlyIfUnchanged) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  std::vector<SealedField> fields = *store_->ListSealedFields();
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].Aad(), "app/contoso/credential/cert-a/secret");
  EXPECT_EQ(fields[1].Aad(), "app/contoso/credential/secret-2026/secret");
  EXPECT_EQ(fields[2].Aad(), "grant/g/refresh_token");
  EXPECT_EQ(fields[2].sealed, std::string("sealed\0refresh", 14));

  EXPECT_TRUE(*store_->ReplaceSealedField(fields[2], "resealed-token"));
  EXPECT_FALSE(*store_->ReplaceSealedField(fields[2], "again"));  // no longer the old value
  Grant g = *store_->GetGrant("g");
  EXPECT_EQ(g.sealed_refresh_token, "resealed-token");
  EXPECT_EQ(g.version, 2);

  EXPECT_TRUE(*store_->ReplaceSealedField(fields[1], "resealed-secret"));
  App a = *store_->GetApp("contoso");
  EXPECT_EQ(a.credentials[0].sealed_secret, "resealed-secret");
  EXPECT_EQ(a.version, 2);
}

TEST_P(ConformanceTest, ARefreshLeaseHasOneHolderAtATimeAndItsFenceOnlyGrows) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->AcquireRefreshLease("nope", "replica-a", absl::Seconds(30)).status()));

  RefreshLease a = *store_->AcquireRefreshLease("g", "replica-a", absl::Seconds(30));
  EXPECT_TRUE(a.acquired);
  EXPECT_FALSE(a.took_over);
  EXPECT_EQ(a.fence, 1);
  RefreshLease b = *store_->AcquireRefreshLease("g", "replica-b", absl::Seconds(30));
  EXPECT_FALSE(b.acquired);
  EXPECT_EQ(b.holder, "replica-a");
  EXPECT_GT(b.remaining, absl::Seconds(20));
  EXPECT_LE(b.remaining, absl::Seconds(30));

  ASSERT_TRUE(store_->ReleaseRefreshLease(a).ok());
  b = *store_->AcquireRefreshLease("g", "replica-b", absl::Seconds(30));
  EXPECT_TRUE(b.acquired);
  EXPECT_FALSE(b.took_over) << "a released lease is not a takeover";
  EXPECT_EQ(b.fence, 2);
  // A late release by the previous holder changes nothing.
  ASSERT_TRUE(store_->ReleaseRefreshLease(a).ok());
  EXPECT_FALSE(store_->AcquireRefreshLease("g", "replica-c", absl::Seconds(30))->acquired);
}

TEST_P(ConformanceTest, AHolderWhoseLeaseWasTakenOverCannotWrite) {
  ASSERT_TRUE(store_->CreateApp(SampleApp("contoso")).ok());
  ASSERT_TRUE(store_->CreateGrant(SampleGrant("g", "contoso")).ok());
  // A lease of no length has run out the moment it is taken: as if its holder
  // had stalled past its lease.
  RefreshLease stalled = *store_->AcquireRefreshLease("g", "replica-a", absl::ZeroDuration());
  ASSERT_TRUE(stalled.acquired);
  RefreshLease successor = *store_->AcquireRefreshLease("g", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(successor.acquired);
  EXPECT_TRUE(successor.took_over);
  EXPECT_EQ(successor.fence, stalled.fence + 1);

  Grant g = *store_->GetGrant("g");
  g.sealed_refresh_token = "from-the-stalled-holder";
  absl::StatusOr<int64_t> refused = store_->UpdateGrantUnderLease(g, stalled);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("taken over"));
  SharedAccessToken token{"sealed-a", "Bearer", {"scope-1", "scope-2"}, kT0 + absl::Hours(1), "", 0, kT0};
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->PutSharedAccessToken(token, stalled)));
  EXPECT_FALSE(store_->GetSharedAccessToken("g")->has_value());

  g.sealed_refresh_token = "from-the-successor";
  ASSERT_TRUE(store_->UpdateGrantUnderLease(g, successor).ok());
  EXPECT_EQ(store_->GetGrant("g")->sealed_refresh_token, "from-the-successor");
  token.sealed = std::string("sealed\0b", 8);
  ASSERT_TRUE(store_->PutSharedAccessToken(token, successor).ok());
  std::optional<SharedAccessToken> shared = *store_->GetSharedAccessToken("g");
  ASSERT_TRUE(shared.has_value());
  EXPECT_EQ(shared->sealed, token.sealed);
  EXPECT_EQ(shared->token_type, "Bearer");
  EXPECT_THAT(shared->scopes, ElementsAre("scope-1", "scope-2"));
  EXPECT_EQ(shared->expire_time, token.expire_time);
  EXPECT_EQ(shared->holder, "replica-b");
  EXPECT_EQ(shared->fence, successor.fence);
  EXPECT_EQ(shared->issue_time, kT0);

  // Re-reading after a reopen (another replica) sees the same.
  store_ = factory_->Open();
  EXPECT_EQ((*store_->GetSharedAccessToken("g"))->sealed, token.sealed);
  // Storing the token released the lease.
  RefreshLease next = *store_->AcquireRefreshLease("g", "replica-c", absl::Seconds(30));
  EXPECT_TRUE(next.acquired);
  EXPECT_FALSE(next.took_over);
  ASSERT_TRUE(store_->DeleteSharedAccessToken("g").ok());
  EXPECT_FALSE(store_->GetSharedAccessToken("g")->has_value());
  ASSERT_TRUE(store_->PutSharedAccessToken(token, next).ok());
  ASSERT_TRUE(store_->DeleteGrant("g").ok());
  EXPECT_FALSE(store_->GetSharedAccessToken("g")->has_value()) << "deleted with its grant";
}

TEST_P(ConformanceTest, PendingConsentsAreTakenOnceAndDeviceFlowsClaimedOnce) {
  const PendingConsent auth{"auth:abc", "g", "spiffe://caller", std::string("sealed\0a", 8), kT0 + absl::Minutes(10),
                            absl::InfiniteFuture()};
  ASSERT_TRUE(store_->PutPendingConsent(auth).ok());
  std::optional<PendingConsent> got = *store_->GetPendingConsent("auth:abc");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->grant, "g");
  EXPECT_EQ(got->caller, "spiffe://caller");
  EXPECT_EQ(got->sealed, auth.sealed);
  EXPECT_EQ(got->expire_time, auth.expire_time);
  store_ = factory_->Open();  // another replica
  EXPECT_TRUE(store_->TakePendingConsent("auth:abc")->has_value());
  EXPECT_FALSE(store_->TakePendingConsent("auth:abc")->has_value()) << "single use";
  EXPECT_FALSE(store_->GetPendingConsent("auth:abc")->has_value());

  PendingConsent device{"device:g", "g", "", "sealed-1", kT0 + absl::Minutes(15), kT0 + absl::Seconds(5)};
  ASSERT_TRUE(store_->PutPendingConsent(device).ok());
  ASSERT_TRUE(store_->PutPendingConsent(auth).ok());
  EXPECT_TRUE(store_->ClaimDueDeviceConsents(kT0, absl::Minutes(1))->empty()) << "not due yet";
  std::vector<PendingConsent> claimed = *store_->ClaimDueDeviceConsents(kT0 + absl::Seconds(5), absl::Minutes(1));
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].key, "device:g");
  EXPECT_EQ(claimed[0].next_poll, kT0 + absl::Seconds(65));
  EXPECT_TRUE(store_->ClaimDueDeviceConsents(kT0 + absl::Seconds(6), absl::Minutes(1))->empty())
      << "claimed by the first";

  PendingConsent polled = claimed[0];
  polled.sealed = "sealed-2";
  polled.next_poll = kT0 + absl::Seconds(10);
  EXPECT_TRUE(*store_->ReplacePendingConsent(polled, "sealed-1"));
  EXPECT_FALSE(*store_->ReplacePendingConsent(polled, "sealed-1")) << "no longer that value";
  EXPECT_EQ((*store_->GetPendingConsent("device:g"))->next_poll, kT0 + absl::Seconds(10));
  PendingConsent done = polled;
  done.sealed.clear();
  EXPECT_TRUE(*store_->ReplacePendingConsent(done, "sealed-2"));
  EXPECT_FALSE(store_->GetPendingConsent("device:g")->has_value());
}

TEST_P(ConformanceTest, ReplicasSayTheyAreAliveAndLeave) {
  const absl::Time started = absl::FromUnixSeconds(1'795'776'000);
  ASSERT_TRUE(store_->Heartbeat("replica-b", started).ok());
  ASSERT_TRUE(store_->Heartbeat("replica-a", started).ok());
  ASSERT_TRUE(store_->Heartbeat("replica-a", started).ok());
  std::vector<ReplicaRecord> live = *store_->LiveReplicas(absl::Hours(1));
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, "replica-a");
  EXPECT_EQ(live[0].start_time, started);
  EXPECT_GT(live[0].last_seen, started);
  EXPECT_EQ(live[1].id, "replica-b");
  ASSERT_TRUE(store_->RemoveReplica("replica-a").ok());
  live = *store_->LiveReplicas(absl::Hours(1));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "replica-b");
  EXPECT_TRUE(store_->PublishChange("grant:g").ok());
}

TEST_P(ConformanceTest, AuditEventsAreFilteredPagedAndPruned) {
  // Two one by one, three in a batch (how the audit trail writes them).
  std::vector<AuditEvent> batch;
  for (int i = 0; i < 5; ++i) {
    AuditEvent e{0, kT0 + absl::Minutes(i), i % 2 ? "svc-a" : "svc-b", "token.get", "/m", "contoso",
                 absl::StrCat("g", i), i == 4 ? "PERMISSION_DENIED" : "OK", "detail", absl::StrCat("req-", i)};
    if (i < 2) {
      EXPECT_GT(*store_->AppendAuditEvent(e), 0);
    } else {
      batch.push_back(e);
    }
  }
  ASSERT_TRUE(store_->AppendAuditEvents(batch).ok());
  auto ids = [](const std::vector<AuditEvent>& es) {
    std::vector<std::string> out;
    for (const AuditEvent& e : es) out.push_back(e.request_id);
    return out;
  };
  AuditFilter all;
  std::vector<AuditEvent> events = *store_->ListAuditEvents(all);
  EXPECT_THAT(ids(events), ElementsAre("req-4", "req-3", "req-2", "req-1", "req-0"));
  EXPECT_EQ(events[0].time, kT0 + absl::Minutes(4));
  EXPECT_EQ(events[0].grant, "g4");
  AuditFilter by_caller;
  by_caller.caller = "svc-a";
  EXPECT_THAT(ids(*store_->ListAuditEvents(by_caller)), ElementsAre("req-3", "req-1"));
  AuditFilter denied;
  denied.result = "PERMISSION_DENIED";
  EXPECT_THAT(ids(*store_->ListAuditEvents(denied)), ElementsAre("req-4"));
  AuditFilter page;
  page.limit = 2;
  std::vector<AuditEvent> first = *store_->ListAuditEvents(page);
  page.before_id = first.back().id;
  EXPECT_THAT(ids(*store_->ListAuditEvents(page)), ElementsAre("req-2", "req-1"));
  AuditFilter window;
  window.since = kT0 + absl::Minutes(1);
  window.until = kT0 + absl::Minutes(3);
  EXPECT_THAT(ids(*store_->ListAuditEvents(window)), ElementsAre("req-2", "req-1"));
  EXPECT_EQ(*store_->PruneAuditEvents(kT0 + absl::Minutes(2)), 2);
  EXPECT_THAT(ids(*store_->ListAuditEvents(all)), ElementsAre("req-4", "req-3", "req-2"));
}

INSTANTIATE_TEST_SUITE_P(Stores, ConformanceTest, ::testing::Values("memory", "sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

TEST(PostgresBackendTest, ReconnectsAfterTheServerRestarts) {
  auto server = testing::PostgresServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto backend = PostgresBackend::Open(Secret::CopyFrom((*server)->Dsn()), 2, PostgresMigrations());
  ASSERT_TRUE(backend.ok()) << backend.status();
  SqlCredentialStore store(std::move(*backend));
  ASSERT_TRUE(store.CreateApp(SampleApp("before")).ok());
  ASSERT_TRUE((*server)->Restart().ok());
  // Both pooled connections died with the server; each call finds a fresh one.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<App> app = store.GetApp("before");
    ASSERT_TRUE(app.ok()) << app.status();
  }
  EXPECT_TRUE(store.CreateApp(SampleApp("after")).ok());
}

// A store on a private database of the shared server, over a pool of
// `connections`; `Psql` runs SQL beside it as an administrator would.
class PostgresStatementsTest : public ::testing::Test {
 protected:
  void Open(int connections) {
    auto backend = PostgresBackend::Open(Secret::CopyFrom(testing::SharedPostgresServer().Dsn(database_)),
                                         connections, PostgresMigrations());
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = backend->get();
    store_ = std::make_unique<SqlCredentialStore>(std::move(*backend));
    ASSERT_TRUE(store_->CreateApp(SampleApp("app")).ok());
    ASSERT_TRUE(store_->CreateGrant(SampleGrant("g1", "app")).ok());
  }
  void Psql(const std::string& sql) {
    testing::CommandResult r =
        testing::SharedPostgresServer().RunClient("psql", {"-v", "ON_ERROR_STOP=1", "-c", sql}, database_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // The statements prepared on the connection that runs this read.
  std::vector<std::string> PreparedStatements(absl::string_view like) {
    auto rows = backend_->ReadSnapshot(
        {{"SELECT statement FROM pg_prepared_statements WHERE statement LIKE ? ORDER BY statement",
          {SqlValue::Text(std::string(like))},
          {}}});
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::vector<std::string> statements;
    if (rows.ok()) {
      for (const SqlRow& r : (*rows)[0]) statements.push_back(r[0].AsString());
    }
    return statements;
  }

  std::string database_ = *testing::SharedPostgresServer().CreateDatabase();
  SqlBackend* backend_ = nullptr;
  std::unique_ptr<SqlCredentialStore> store_;
};

TEST_F(PostgresStatementsTest, EachStatementIsPreparedOncePerConnection) {
  Open(1);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Grant> grant = store_->GetGrant("g1");
    ASSERT_TRUE(grant.ok()) << grant.status();
    Grant changed = *grant;
    changed.mailbox = absl::StrCat("box", i, "@contoso.com");
    ASSERT_TRUE(store_->UpdateGrant(changed).ok());
  }
  EXPECT_EQ(store_->GetGrant("g1")->mailbox, "box2@contoso.com");
  // One connection: the grant's read and its update each prepared once.
  EXPECT_THAT(PreparedStatements("SELECT id, app_id, mailbox%FROM grants o WHERE o.id = $1%"), ::testing::SizeIs(1));
  EXPECT_THAT(PreparedStatements("UPDATE grants SET%"), ::testing::SizeIs(1));
}

TEST_F(PostgresStatementsTest, AFailedReadLeavesTheConnectionUsable) {
  Open(1);
  auto failed = backend_->ReadSnapshot({{"SELECT id FROM grants WHERE id = ?", {SqlValue::Text("g1")}, {}},
                                        {"SELECT no_such_column FROM grants WHERE id = ?", {SqlValue::Text("g1")}, {}},
                                        {"SELECT id FROM apps WHERE id = ?", {SqlValue::Text("app")}, {}}});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("no_such_column"));
  // The one connection is out of the failed transaction and of the pipeline:
  // reads and writes go on.
  absl::StatusOr<Grant> grant = store_->GetGrant("g1");
  ASSERT_TRUE(grant.ok()) << grant.status();
  grant->mailbox = "after@contoso.com";
  ASSERT_TRUE(store_->UpdateGrant(*grant).ok());
  EXPECT_EQ(store_->GetGrant("g1")->mailbox, "after@contoso.com");
}

TEST_F(PostgresStatementsTest, ReadsGoOnAfterASchemaChangeAltersWhatAPreparedStatementReturns) {
  Open(2);
  // Prepared on the connections these reads took (four at once: one or both).
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) readers.emplace_back([&] { EXPECT_TRUE(store_->GetGrant("g1").ok()); });
  for (std::thread& t : readers) t.join();
  // As a newer replica's migration might: the column's type changes, so the
  // prepared read now returns another row type, which PostgreSQL refuses
  // ("cached plan must not change result type").
  Psql("ALTER TABLE grants ALTER COLUMN mailbox TYPE varchar(320)");
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<Grant> grant = store_->GetGrant("g1");
    ASSERT_TRUE(grant.ok()) << grant.status();
    EXPECT_EQ(grant->mailbox, SampleGrant("g1", "app").mailbox);
  }
  // Writes go on too, and the reads see them.
  Grant changed = *store_->GetGrant("g1");
  changed.mailbox = "renamed@contoso.com";
  ASSERT_TRUE(store_->UpdateGrant(changed).ok());
  EXPECT_EQ(store_->GetGrant("g1")->mailbox, "renamed@contoso.com");
}

TEST(PostgresBackendTest, ConnectionErrorsNeverShowTheConnectionString) {
  auto backend =
      PostgresBackend::Open(Secret::CopyFrom("host=127.0.0.1 port=1 user=u password=hunter2-secret connect_timeout=3"),
                            1, PostgresMigrations());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(backend.status().message()), ::testing::Not(HasSubstr("hunter2-secret")));
}

}  // namespace
}  // namespace tokenbroker
