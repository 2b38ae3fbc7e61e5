#include "service/vault/vault.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/in_memory_credential_store.h"
#include "tests/support/credentials.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const Keyring> Ring(const std::string& yaml) {
  return std::make_shared<const Keyring>(*Keyring::Parse(yaml, "test"));
}
constexpr char kK1[] = "  k1: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
constexpr char kK2[] = "  k2: ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n";

class VaultTest : public ::testing::Test {
 protected:
  VaultTest() : sealer_(Ring(std::string("active: k1\nkeys:\n") + kK1)), vault_(store_, sealer_, clock_) {}

  CredentialInput Secret_(const std::string& id, const std::string& value) {
    return testing::ClientSecretCredential(id, value, clock_.Now() + absl::Hours(24 * 300));
  }
  CredentialInput Certificate(const std::string& id, const testing::CertificateFiles& files) {
    return testing::CertificateCredential(id, files);
  }
  App Spec(const std::string& id) {
    App app;
    app.id = id;
    app.provider = Provider::kMicrosoft;
    app.tenant = "contoso.onmicrosoft.com";
    app.client_id = "11111111-2222-3333-4444-555555555555";
    return app;
  }
  std::vector<CredentialInput> One(CredentialInput c) {
    std::vector<CredentialInput> v;
    v.push_back(std::move(c));
    return v;
  }

  FakeClock clock_{absl::Now()};  // certificates made now must be valid now
  InMemoryCredentialStore store_;
  Sealer sealer_;
  Vault vault_;
  testing::TempDir dir_;
};

TEST_F(VaultTest, SecretsAreSealedBoundToTheirRecordAndOpenAgain) {
  absl::StatusOr<App> app = vault_.CreateApp(Spec("contoso"), One(Secret_("s1", "very-secret-value")));
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->authority_host, "login.microsoftonline.com");
  const AppCredential stored = store_.GetApp("contoso")->credentials[0];
  EXPECT_THAT(stored.sealed_secret, ::testing::Not(HasSubstr("very-secret-value")));
  EXPECT_EQ(*Sealer::KeyIdOf(stored.sealed_secret), "k1");
  EXPECT_EQ(vault_.OpenCredentialSecret(*app, stored)->Reveal(), "very-secret-value");
  // Sealing twice gives different ciphertexts (fresh nonce).
  EXPECT_NE(*sealer_.Seal("x", "aad"), *sealer_.Seal("x", "aad"));
}

TEST_F(VaultTest, ASealedValueCopiedToAnotherRecordDoesNotOpen) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s1", "secret-of-a"))).ok());
  ASSERT_TRUE(vault_.CreateApp(Spec("b"), One(Secret_("s1", "secret-of-b"))).ok());
  App b = *store_.GetApp("b");
  b.credentials[0].sealed_secret = store_.GetApp("a")->credentials[0].sealed_secret;
  absl::StatusOr<Secret> opened = vault_.OpenCredentialSecret(b, b.credentials[0]);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(opened.status().message()),
              HasSubstr("sealed value of app/b/credential/s1/secret does not open with key \"k1\""));
}

TEST_F(VaultTest, ATamperedValueGivesAClearErrorNamingTheRecord) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s1", "secret-of-a"))).ok());
  App a = *store_.GetApp("a");
  std::string& sealed = a.credentials[0].sealed_secret;
  sealed[sealed.size() - 20] ^= 0x01;
  absl::StatusOr<Secret> opened = vault_.OpenCredentialSecret(a, a.credentials[0]);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr("app/a/credential/s1/secret"));
  sealed = "garbage";
  EXPECT_THAT(std::string(vault_.OpenCredentialSecret(a, a.credentials[0]).status().message()),
              HasSubstr("is damaged"));
}

TEST_F(VaultTest, CertificateCredentialsCarryThumbprintsAndExpiry) {
  testing::CertificateFiles files = testing::MakeSelfSignedCertificate(dir_, "contoso-imap", 200);
  absl::StatusOr<App> app = vault_.CreateApp(Spec("contoso"), One(Certificate("cert", files)));
  ASSERT_TRUE(app.ok()) << app.status();
  const AppCredential& c = app->credentials[0];
  EXPECT_EQ(c.kind, CredentialKind::kCertificate);
  EXPECT_EQ(c.subject, "O=tokenbroker tests,CN=contoso-imap");
  EXPECT_NEAR(absl::ToDoubleHours(c.not_after - absl::Now()), 200 * 24, 1);
  // The SHA-256 thumbprint matches openssl's own fingerprint.
  testing::CommandResult fp =
      testing::RunCommand({"/usr/bin/openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", files.certificate});
  std::string hex = absl::StrReplaceAll(fp.out.substr(fp.out.find('=') + 1), {{":", ""}, {"\n", ""}});
  std::string expected;
  absl::WebSafeBase64Escape(absl::HexStringToBytes(hex), &expected);
  EXPECT_EQ(c.thumbprint_sha256, expected);
  EXPECT_EQ(c.thumbprint_sha1.size(), 27u);  // 20 bytes, base64url without padding
  EXPECT_THAT(c.sealed_secret, ::testing::Not(HasSubstr("PRIVATE KEY")));
  EXPECT_THAT(vault_.OpenCredentialSecret(*app, c)->Reveal(), HasSubstr("-----BEGIN PRIVATE KEY-----"));
}

TEST_F(VaultTest, AKeyThatDoesNotMatchTheCertificateIsRejected) {
  testing::CertificateFiles a = testing::MakeSelfSignedCertificate(dir_, "a");
  testing::CertificateFiles b = testing::MakeSelfSignedCertificate(dir_, "b");
  CredentialInput mixed = Certificate("cert", a);
  mixed.secret = Secret::CopyFrom(testing::ReadFile(b.private_key));
  absl::Status s = vault_.CreateApp(Spec("contoso"), One(std::move(mixed))).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "credentials[0].certificate.private_key_pem: the private key does not belong to the certificate");
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("BEGIN")));
  testing::CertificateFiles ec = testing::MakeSelfSignedCertificate(dir_, "ec", 30, "ec");
  EXPECT_THAT(std::string(vault_.CreateApp(Spec("contoso"), One(Certificate("c", ec))).status().message()),
              HasSubstr("not an RSA key"));
  CredentialInput not_pem = Certificate("c", a);
  not_pem.certificate_pem = "hello";
  EXPECT_THAT(std::string(vault_.CreateApp(Spec("contoso"), One(std::move(not_pem))).status().message()),
              HasSubstr("credentials[0].certificate.certificate_pem: no PEM certificate"));
}

TEST_F(VaultTest, ValidationNamesTheField) {
  auto error = [&](App spec, CredentialInput c) {
    return std::string(vault_.CreateApp(std::move(spec), One(std::move(c))).status().message());
  };
  App no_client = Spec("x");
  no_client.client_id.clear();
  EXPECT_EQ(error(no_client, Secret_("s", "v")), "app.client_id: required");
  App no_tenant = Spec("x");
  no_tenant.tenant.clear();
  EXPECT_THAT(error(no_tenant, Secret_("s", "v")), HasSubstr("app.tenant: required for Microsoft apps"));
  EXPECT_THAT(error(Spec("Bad_Id"), Secret_("s", "v")), HasSubstr("app.id: \"Bad_Id\" is not a valid id"));
  CredentialInput no_expiry = Secret_("s", "v");
  no_expiry.not_after = absl::InfiniteFuture();
  EXPECT_THAT(error(Spec("x"), std::move(no_expiry)), HasSubstr("credentials[0].not_after: required for client secrets"));
  CredentialInput expired = Secret_("s", "v");
  expired.not_after = clock_.Now() - absl::Hours(1);
  EXPECT_EQ(error(Spec("x"), std::move(expired)), "credentials[0].not_after: is already past");
  EXPECT_EQ(error(Spec("x"), Secret_("s", "")), "credentials[0]: the secret is empty");
  EXPECT_TRUE(vault_.CreateApp(Spec("x"), {}).status().message() == "credentials: an app needs at least one credential");
  std::vector<CredentialInput> twice;
  twice.push_back(Secret_("s", "1"));
  twice.push_back(Secret_("s", "2"));
  EXPECT_EQ(vault_.CreateApp(Spec("x"), std::move(twice)).status().message(), "credentials[1].id: \"s\" is used twice");
  EXPECT_EQ(vault_.ListApps()->size(), 0u);
}

TEST_F(VaultTest, CredentialsAreAddedRemovedAndReordered) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("old", "1"))).ok());
  ASSERT_TRUE(vault_.AddCredential("a", Secret_("new", "2"), 0).ok());
  ASSERT_TRUE(vault_.AddCredential("a", Secret_("last", "3"), 99).ok());
  auto ids = [&] {
    std::vector<std::string> out;
    const App app = *store_.GetApp("a");
    for (const AppCredential& c : app.credentials) out.push_back(c.id);
    return out;
  };
  EXPECT_THAT(ids(), ::testing::ElementsAre("new", "old", "last"));
  EXPECT_EQ(vault_.AddCredential("a", Secret_("old", "x"), 0).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(vault_.ReorderCredentials("a", {"last", "old", "new"}).ok());
  EXPECT_THAT(ids(), ::testing::ElementsAre("last", "old", "new"));
  EXPECT_EQ(vault_.ReorderCredentials("a", {"last", "old"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(vault_.ReorderCredentials("a", {"last", "old", "old"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(vault_.RemoveCredential("a", "old").ok());
  ASSERT_TRUE(vault_.RemoveCredential("a", "last").ok());
  EXPECT_EQ(vault_.RemoveCredential("a", "new").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(vault_.RemoveCredential("a", "ghost").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(VaultTest, AValueSealedUnderAKeyNotYetLoadedOpensAfterTheKeyringIsReread) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "1"))).ok());
  Grant user;
  user.id = "user";
  user.app = "a";
  user.mailbox = "user@contoso.com";
  ASSERT_TRUE(vault_.ImportGrant(user, Secret::CopyFrom("0.refresh-v1")).ok());
  // Another replica, whose keyring already has k2 active, rotates the token.
  Sealer other(Ring(std::string("active: k2\nkeys:\n") + kK1 + kK2));
  Vault replica(store_, other, clock_);
  ASSERT_TRUE(replica.StoreRefreshToken(*store_.GetGrant("user"), Secret::CopyFrom("0.refresh-v2")).ok());
  const Grant rotated = *store_.GetGrant("user");
  EXPECT_EQ(*Sealer::KeyIdOf(rotated.sealed_refresh_token), "k2");

  // Without a way to re-read the keyring, this replica cannot open it.
  EXPECT_FALSE(vault_.OpenRefreshToken(rotated).ok());
  int reloads = 0;
  vault_.SetKeyringReloader([&] {
    ++reloads;
    sealer_.ReplaceKeyring(Ring(std::string("active: k2\nkeys:\n") + kK1 + kK2));
    return absl::OkStatus();
  });
  absl::StatusOr<Secret> opened = vault_.OpenRefreshToken(rotated);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->Reveal(), "0.refresh-v2");
  EXPECT_EQ(reloads, 1);
  // A value that does not open for another reason (tampered) does not make
  // it re-read the keyring again.
  Grant tampered = rotated;
  tampered.sealed_refresh_token.back() ^= 1;
  EXPECT_FALSE(vault_.OpenRefreshToken(tampered).ok());
  EXPECT_EQ(reloads, 1);
}

TEST_F(VaultTest, GrantsGetDefaultScopesAndRefreshTokensAreSealed) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "1"))).ok());
  Grant robot;
  robot.id = "robot";
  robot.app = "a";
  robot.mailbox = "robot@contoso.com";
  robot.kind = GrantKind::kAppOnly;
  absl::StatusOr<Grant> created = vault_.CreateGrant(robot);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_THAT(created->scopes, ::testing::ElementsAre("https://outlook.office365.com/.default"));

  Grant user;
  user.id = "user";
  user.app = "a";
  user.mailbox = "user@contoso.com";
  absl::StatusOr<Grant> imported = vault_.ImportGrant(user, Secret::CopyFrom("0.AAAA-refresh-token"));
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->kind, GrantKind::kDelegated);
  EXPECT_THAT(imported->scopes,
              ::testing::ElementsAre("offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"));
  EXPECT_THAT(store_.GetGrant("user")->sealed_refresh_token, ::testing::Not(HasSubstr("refresh-token")));
  EXPECT_EQ(vault_.OpenRefreshToken(*store_.GetGrant("user"))->Reveal(), "0.AAAA-refresh-token");

  EXPECT_EQ(vault_.ImportGrant(user, Secret::CopyFrom("second")).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(vault_.ImportGrant(user, Secret::CopyFrom("second"), /*replace=*/true).ok());
  EXPECT_EQ(vault_.OpenRefreshToken(*store_.GetGrant("user"))->Reveal(), "second");

  Grant stale = *store_.GetGrant("user");
  ASSERT_TRUE(vault_.StoreRefreshToken(stale, Secret::CopyFrom("rotated")).ok());
  EXPECT_EQ(vault_.StoreRefreshToken(stale, Secret::CopyFrom("lost")).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(vault_.OpenRefreshToken(*store_.GetGrant("user"))->Reveal(), "rotated");

  Grant bad = user;
  bad.id = "bad";
  bad.mailbox = "no-at-sign";
  EXPECT_EQ(vault_.ImportGrant(bad, Secret::CopyFrom("x")).status().message(),
            "grant.mailbox: must be an e-mail address (user@domain)");
  bad.mailbox = "x@y";
  bad.app = "missing";
  EXPECT_EQ(vault_.ImportGrant(bad, Secret::CopyFrom("x")).status().message(),
            "grant.app: app \"missing\" does not exist");
  EXPECT_EQ(vault_.ImportGrant(user, Secret()).status().message(), "refresh_token: required");
}

TEST_F(VaultTest, DisableAndEnable) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "1"))).ok());
  Grant g;
  g.id = "g";
  g.app = "a";
  g.mailbox = "g@contoso.com";
  g.kind = GrantKind::kAppOnly;
  ASSERT_TRUE(vault_.CreateGrant(g).ok());
  EXPECT_EQ(vault_.SetGrantEnabled("g", false)->state, GrantState::kDisabled);
  EXPECT_EQ(vault_.SetGrantEnabled("g", false)->version, 2);  // no second write
  EXPECT_EQ(vault_.SetGrantEnabled("g", true)->state, GrantState::kActive);
}

// The one way caches hear of a grant change: every change through the vault,
// whoever makes it; a rotated refresh token is not a change.
// A grant of app "a" for `id`@contoso.com.
Grant GrantOfA(const std::string& id, GrantKind kind = GrantKind::kDelegated) {
  Grant g;
  g.id = id;
  g.app = "a";
  g.mailbox = id + "@contoso.com";
  g.kind = kind;
  return g;
}

TEST_F(VaultTest, EveryGrantChangeIsTold) {
  std::vector<std::string> told;
  vault_.OnGrantChanged([&told](absl::string_view id, ChangeOrigin) { told.emplace_back(id); });
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "1"))).ok());
  ASSERT_TRUE(vault_.CreateGrant(GrantOfA("robot", GrantKind::kAppOnly), RecordSource::kConfig).ok());
  EXPECT_THAT(told, ::testing::ElementsAre("robot"));
  ASSERT_TRUE(vault_.SetGrantEnabled("robot", false).ok());
  ASSERT_TRUE(vault_.SetGrantEnabled("robot", false).ok());  // no change, not told
  ASSERT_TRUE(vault_.DeleteGrant("robot", RecordSource::kConfig).ok());
  EXPECT_THAT(told, ::testing::ElementsAre("robot", "robot", "robot"));

  told.clear();
  Grant user = GrantOfA("user");
  ASSERT_TRUE(vault_.ImportGrant(user, Secret::CopyFrom("0.first")).ok());
  ASSERT_TRUE(vault_.StoreRefreshToken(*store_.GetGrant("user"), Secret::CopyFrom("0.rotated")).ok());
  EXPECT_THAT(told, ::testing::ElementsAre("user"));
  user.mailbox = "shared@contoso.com";  // re-consent for another mailbox
  ASSERT_TRUE(vault_.ImportGrant(user, Secret::CopyFrom("0.second"), /*replace=*/true).ok());
  // A failed consent for an active grant records the error; the grant keeps
  // its tokens, so caches stay.
  ASSERT_TRUE(vault_.RecordConsentFailure("user", ProviderError{"access_denied", 0, "declined", {}}).ok());
  EXPECT_THAT(told, ::testing::ElementsAre("user", "user"));
  // The provider refusing the refresh token is a change every cache hears of.
  ASSERT_TRUE(vault_.ApplyGrantEvent("user", GrantEvent::kRefreshTokenRefused, ProviderError{"invalid_grant"}).ok());
  EXPECT_THAT(told, ::testing::ElementsAre("user", "user", "user"));

  told.clear();
  ASSERT_TRUE(vault_.MarkConsentPending(GrantOfA("carol")).ok());
  ASSERT_TRUE(vault_.RecordConsentFailure("carol", ProviderError{"expired_token"}).ok());
  EXPECT_EQ(store_.GetGrant("carol")->state, GrantState::kNeedsReconsent);
  EXPECT_THAT(told, ::testing::ElementsAre("carol", "carol"));
  // Deleting the app with its grants tells of each.
  told.clear();
  ASSERT_TRUE(vault_.DeleteApp("a", /*force=*/true).ok());
  EXPECT_THAT(told, ::testing::UnorderedElementsAre("user", "carol"));
  // A failed change tells nothing.
  told.clear();
  EXPECT_FALSE(vault_.DeleteGrant("nobody").ok());
  EXPECT_THAT(told, ::testing::IsEmpty());
}

TEST(GrantEventsTest, OneTableSaysWhereEachEventLeads) {
  EXPECT_EQ(*NextGrantState(GrantState::kActive, GrantEvent::kRefreshTokenRefused), GrantState::kNeedsReconsent);
  EXPECT_EQ(*NextGrantState(GrantState::kActive, GrantEvent::kCredentialsRefused), GrantState::kAppCredentialInvalid);
  EXPECT_EQ(*NextGrantState(GrantState::kNeedsReconsent, GrantEvent::kConsentStarted), GrantState::kPendingConsent);
  EXPECT_EQ(*NextGrantState(GrantState::kActive, GrantEvent::kConsentStarted), GrantState::kActive);  // keeps working
  EXPECT_EQ(*NextGrantState(GrantState::kPendingConsent, GrantEvent::kConsentFailed), GrantState::kNeedsReconsent);
  EXPECT_EQ(*NextGrantState(GrantState::kPendingConsent, GrantEvent::kConsented), GrantState::kActive);
  EXPECT_EQ(*NextGrantState(GrantState::kDisabled, GrantEvent::kEnabled), GrantState::kActive);
  EXPECT_EQ(*NextGrantState(GrantState::kNeedsReconsent, GrantEvent::kEnabled), GrantState::kNeedsReconsent);
  EXPECT_EQ(*NextGrantState(GrantState::kDisabled, GrantEvent::kRefreshed), GrantState::kDisabled);
  for (GrantState s : {GrantState::kActive, GrantState::kPendingConsent, GrantState::kNeedsReconsent,
                       GrantState::kAppCredentialInvalid, GrantState::kDisabled}) {
    EXPECT_EQ(*NextGrantState(s, GrantEvent::kDisabled), GrantState::kDisabled);
  }
  absl::StatusOr<GrantState> refused = NextGrantState(GrantState::kDisabled, GrantEvent::kRefreshTokenRefused);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("disabled"));
  EXPECT_THAT(refused.status().message(), HasSubstr("refresh_token_refused"));
}

TEST_F(VaultTest, AFailureSeenBeforeAnAdminDisabledTheGrantDoesNotUndoIt) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "1"))).ok());
  ASSERT_TRUE(vault_.ImportGrant(GrantOfA("user"), Secret::CopyFrom("0.first")).ok());
  const Grant read_before = *store_.GetGrant("user");  // a refresh starts with this copy
  ASSERT_TRUE(vault_.SetGrantEnabled("user", false).ok());
  std::vector<std::string> told;
  vault_.OnGrantChanged([&told](absl::string_view id, ChangeOrigin) { told.emplace_back(id); });
  // The refresh's invalid_grant arrives after the admin's change: the write
  // of the stale copy is refused, the fresh read is disabled, and the table
  // refuses the event there.
  absl::StatusOr<Grant> moved =
      vault_.ApplyGrantEvent("user", GrantEvent::kRefreshTokenRefused, ProviderError{"invalid_grant"},
                             {.read = &read_before});
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.GetGrant("user")->state, GrantState::kDisabled);
  EXPECT_TRUE(told.empty());
  // The rotated refresh token of a refresh that raced the admin is kept (the
  // provider may have consumed the previous one), and the grant stays disabled.
  ASSERT_TRUE(vault_.StoreRefreshToken(read_before, Secret::CopyFrom("0.late")).ok());
  Grant stored = *store_.GetGrant("user");
  EXPECT_EQ(stored.state, GrantState::kDisabled);
  EXPECT_EQ(vault_.OpenRefreshToken(stored)->Reveal(), "0.late");
  // But a refresh token replaced by re-consent wins over one rotated from the
  // old consent.
  ASSERT_TRUE(vault_.ImportGrant(GrantOfA("user"), Secret::CopyFrom("0.reconsented"), /*replace=*/true).ok());
  EXPECT_EQ(vault_.StoreRefreshToken(stored, Secret::CopyFrom("0.rotated-old")).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(vault_.OpenRefreshToken(*store_.GetGrant("user"))->Reveal(), "0.reconsented");
}

TEST_F(VaultTest, KeyRotationResealsEverythingSoTheOldKeyCanGo) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "app-secret"))).ok());
  Grant user;
  user.id = "user";
  user.app = "a";
  user.mailbox = "user@contoso.com";
  ASSERT_TRUE(vault_.ImportGrant(user, Secret::CopyFrom("refresh-1")).ok());

  sealer_.ReplaceKeyring(Ring(std::string("active: k2\nkeys:\n") + kK1 + kK2));
  absl::StatusOr<KeyRotationReport> report = vault_.RotateKeys();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->active_key_id, "k2");
  EXPECT_EQ(report->resealed, 2u);
  EXPECT_TRUE(report->keys_still_in_use.empty());
  EXPECT_EQ(vault_.RotateKeys()->resealed, 2u);  // every value, every time

  // k1 removed: everything still opens.
  sealer_.ReplaceKeyring(Ring(std::string("active: k2\nkeys:\n") + kK2));
  App a = *store_.GetApp("a");
  EXPECT_EQ(vault_.OpenCredentialSecret(a, a.credentials[0])->Reveal(), "app-secret");
  EXPECT_EQ(vault_.OpenRefreshToken(*store_.GetGrant("user"))->Reveal(), "refresh-1");
}

TEST_F(VaultTest, AValueUnderAMissingKeyNamesTheKeyAndTheRecord) {
  ASSERT_TRUE(vault_.CreateApp(Spec("a"), One(Secret_("s", "app-secret"))).ok());
  sealer_.ReplaceKeyring(Ring(std::string("active: k2\nkeys:\n") + kK2));
  absl::Status s = vault_.RotateKeys().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "sealed value of app/a/credential/s/secret needs key \"k1\", which is not in the keyring");
}

}  // namespace
}  // namespace tokenbroker
