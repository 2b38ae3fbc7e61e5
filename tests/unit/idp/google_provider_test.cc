#include "service/idp/google_provider.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/common/json.h"
#include "service/crypto/jwt.h"
#include "service/store/in_memory_credential_store.h"
#include "service/tokens/token_manager.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

constexpr char kEmail[] = "mail-reader@contoso-project.iam.gserviceaccount.com";

// Google's token endpoint as documented for service accounts: a form with
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and the assertion;
// JSON answers; unauthorized_client (401) when domain-wide delegation is not
// set up.
class FakeGoogle final : public HttpClient {
 public:
  FakeGoogle(std::string certificate_pem, const Clock& clock) : certificate_pem_(std::move(certificate_pem)), clock_(clock) {}
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    ++requests;
    if (request.url != "https://oauth2.googleapis.com/token") return HttpResponse{404, {}, "{}"};
    if (delegation_missing) {
      return HttpResponse{401, {}, R"({"error":"unauthorized_client","error_description":"Client is unauthorized to )"
                                   R"(retrieve access tokens using this method."})"};
    }
    std::map<std::string, std::string> form = testing::ParseForm(request.body);
    if (form["grant_type"] != "urn:ietf:params:oauth:grant-type:jwt-bearer") return Bad("unsupported_grant_type");
    const std::string& jwt = form["assertion"];
    if (!VerifyJwt(jwt, JwtAlgorithm::kRs256, certificate_pem_).ok()) return Bad("invalid_grant");
    std::vector<std::string> parts = absl::StrSplit(jwt, '.');
    header = Decode(parts[0]);
    claims = Decode(parts[1]);
    return HttpResponse{200, {}, R"({"access_token":"ya29.fake-google-token","expires_in":3599,"token_type":"Bearer"})"};
  }

  static google::protobuf::Struct Decode(const std::string& part) {
    std::string json;
    absl::WebSafeBase64Unescape(part, &json);
    google::protobuf::Struct s;
    (void)google::protobuf::util::JsonStringToMessage(json, &s);
    return s;
  }
  static std::string Str(const google::protobuf::Struct& s, const std::string& k) {
    return s.fields().count(k) ? s.fields().at(k).string_value() : "";
  }
  static double Num(const google::protobuf::Struct& s, const std::string& k) {
    return s.fields().count(k) ? s.fields().at(k).number_value() : 0;
  }

  int requests = 0;
  bool delegation_missing = false;
  google::protobuf::Struct header, claims;

 private:
  HttpResponse Bad(const std::string& error) { return HttpResponse{400, {}, R"({"error":")" + error + "\"}"}; }
  std::string certificate_pem_;
  const Clock& clock_;
};

class GoogleProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = testing::MakeSelfSignedCertificate(dir_, "service-account");
    idp_ = std::make_unique<FakeGoogle>(testing::ReadFile(files_.certificate), clock_);
    google_ = std::make_unique<GoogleProvider>(*idp_, clock_);
    tokens_ = std::make_unique<TokenManager>(vault_, std::map<Provider, IdentityProvider*>{{Provider::kGoogle, google_.get()}},
                                             clock_, logger_);
    App app;
    app.id = "workspace";
    app.provider = Provider::kGoogle;
    app.client_id = "123456789";
    CredentialInput key;
    key.id = "key-1";
    key.kind = CredentialKind::kServiceAccountKey;
    key.secret = Secret::CopyFrom(absl::StrCat(
        R"({"type":"service_account","project_id":"contoso-project","private_key_id":"kid-1","private_key":)",
        JsonQuote(testing::ReadFile(files_.private_key)), R"(,"client_email":")", kEmail,
        R"(","client_id":"123456789","token_uri":"https://oauth2.googleapis.com/token"})"));
    std::vector<CredentialInput> creds;
    creds.push_back(std::move(key));
    ASSERT_TRUE(vault_.CreateApp(app, std::move(creds)).ok());
    Grant g;
    g.id = "support";
    g.app = "workspace";
    g.mailbox = "support@contoso.com";
    g.kind = GrantKind::kServiceAccount;
    ASSERT_TRUE(vault_.CreateGrant(g).ok());
  }

  testing::TempDir dir_;
  testing::CertificateFiles files_;
  FakeClock clock_{absl::Now()};
  InMemoryCredentialStore store_;
  Sealer sealer_{std::make_shared<const Keyring>(*Keyring::Generate(absl::Now()))};
  Vault vault_{store_, sealer_, clock_};
  Logger logger_{LogLevel::kError, [](absl::string_view) {}};
  std::unique_ptr<FakeGoogle> idp_;
  std::unique_ptr<GoogleProvider> google_;
  std::unique_ptr<TokenManager> tokens_;
};

TEST_F(GoogleProviderTest, AServiceAccountImpersonatesTheMailboxWithASignedAssertion) {
  EXPECT_EQ(vault_.GetApp("workspace")->credentials[0].service_account_email, kEmail);
  absl::StatusOr<AccessToken> t = tokens_->GetAccessToken("support", absl::Minutes(5));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->token.Reveal(), "ya29.fake-google-token");
  EXPECT_THAT(t->scopes, ::testing::ElementsAre("https://mail.google.com/"));
  EXPECT_EQ(FakeGoogle::Str(idp_->header, "alg"), "RS256");
  EXPECT_EQ(FakeGoogle::Str(idp_->header, "kid"), "kid-1");
  EXPECT_EQ(FakeGoogle::Str(idp_->claims, "iss"), kEmail);
  EXPECT_EQ(FakeGoogle::Str(idp_->claims, "sub"), "support@contoso.com");
  EXPECT_EQ(FakeGoogle::Str(idp_->claims, "scope"), "https://mail.google.com/");
  EXPECT_EQ(FakeGoogle::Str(idp_->claims, "aud"), "https://oauth2.googleapis.com/token");
  EXPECT_EQ(FakeGoogle::Num(idp_->claims, "iat"), static_cast<double>(absl::ToUnixSeconds(clock_.Now())));
  EXPECT_LE(FakeGoogle::Num(idp_->claims, "exp") - FakeGoogle::Num(idp_->claims, "iat"), 3600);
}

TEST_F(GoogleProviderTest, MissingDomainWideDelegationSaysWhereToFixIt) {
  idp_->delegation_missing = true;
  absl::Status s = tokens_->GetAccessToken("support", absl::Minutes(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("Domain-wide delegation"));
  EXPECT_EQ(vault_.GetGrant("support")->state, GrantState::kActive) << "not a consent problem";
}

}  // namespace
}  // namespace tokenbroker
