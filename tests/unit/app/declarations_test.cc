#include "service/app/declarations.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/config/config_loader.h"
#include "service/store/in_memory_credential_store.h"
#include "tests/support/credentials.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

class DeclarationsTest : public ::testing::Test {
 protected:
  DeclarationsTest()
      : sealer_(std::make_shared<const Keyring>(
            *Keyring::Parse("active: k1\nkeys:\n  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "t"))),
        vault_(store_, sealer_, clock_) {}

  Config Load(const std::string& declarations) {
    absl::StatusOr<Config> config = ParseConfig(
        "server: {grpc_address: '127.0.0.1:0', plaintext: true}\nstore: {sqlite: {path: x}}\n"
        "keys: {keyring_file: k}\n" +
            declarations,
        "test.yaml");
    EXPECT_TRUE(config.ok()) << config.status();
    return *config;
  }
  std::string Declared(const std::string& secret_file) {
    return "apps:\n"
           "  - id: contoso\n"
           "    provider: microsoft\n"
           "    tenant: contoso.onmicrosoft.com\n"
           "    client_id: c1\n"
           "    labels: {team: mail}\n"
           "    credentials:\n"
           "      - id: s1\n"
           "        client_secret_file: \"" + secret_file + "\"\n"
           "        not_after: 2099-01-01\n"
           "grants:\n"
           "  - id: robot\n"
           "    app: contoso\n"
           "    mailbox: robot@contoso.com\n";
  }
  absl::StatusOr<ReconcileReport> Reconcile(const Config& config) {
    return DeclarationReconciler(config, vault_).Reconcile();
  }

  FakeClock clock_;
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  testing::TempDir dir_;
};

TEST_F(DeclarationsTest, CreatesThenLeavesUnchangedThenUpdatesWhenTheSecretFileChanges) {
  const std::string secret = dir_.WriteFile("cs", "first-secret\n");
  Config config = Load(Declared(secret));
  absl::StatusOr<ReconcileReport> r = Reconcile(config);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->created, 2);
  App app = *vault_.GetApp("contoso");
  EXPECT_EQ(app.source, RecordSource::kConfig);
  EXPECT_EQ(app.labels.at("team"), "mail");
  EXPECT_EQ(vault_.OpenCredentialSecret(app, app.credentials[0])->Reveal(), "first-secret");
  EXPECT_EQ(vault_.GetGrant("robot")->source, RecordSource::kConfig);

  r = Reconcile(config);
  EXPECT_EQ(r->unchanged, 2);
  EXPECT_FALSE(r->changed());

  dir_.WriteFile("cs", "rotated-secret");
  r = Reconcile(config);
  EXPECT_EQ(r->updated, 1);
  app = *vault_.GetApp("contoso");
  EXPECT_EQ(vault_.OpenCredentialSecret(app, app.credentials[0])->Reveal(), "rotated-secret");
}

TEST_F(DeclarationsTest, DeclaredRecordsAreChangedOnlyThroughTheFile) {
  Config config = Load(Declared(dir_.WriteFile("cs", "s")));
  ASSERT_TRUE(Reconcile(config).ok());
  absl::Status s = vault_.DeleteApp("contoso", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("is declared in the configuration file; change it there"));
  EXPECT_EQ(vault_.DeleteGrant("robot").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vault_.RemoveCredential("contoso", "s1").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DeclarationsTest, WhatIsNoLongerDeclaredIsDeleted) {
  ASSERT_TRUE(Reconcile(Load(Declared(dir_.WriteFile("cs", "s")))).ok());
  absl::StatusOr<ReconcileReport> r = Reconcile(Load(""));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->deleted, 2);
  EXPECT_TRUE(vault_.ListApps()->empty());
}

TEST_F(DeclarationsTest, ErrorsNameTheConfigKey) {
  absl::Status s = Reconcile(Load(Declared(dir_.File("missing")))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("apps[0].credentials[0].client_secret_file: cannot open"));
  EXPECT_TRUE(vault_.ListApps()->empty());
}

TEST_F(DeclarationsTest, AnApiCreatedAppWithTheSameIdIsAConflict) {
  App app;
  app.id = "contoso";
  app.tenant = "t";
  app.client_id = "c";
  std::vector<CredentialInput> inputs = testing::ClientSecretCredentials("s", "v", clock_.Now() + absl::Hours(1));
  ASSERT_TRUE(vault_.CreateApp(app, std::move(inputs)).ok());
  absl::Status s = Reconcile(Load(Declared(dir_.WriteFile("cs", "s")))).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("apps[0].id: app \"contoso\" exists and was created over the API"));
}

}  // namespace
}  // namespace tokenbroker
