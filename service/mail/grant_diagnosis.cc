#include "service/mail/grant_diagnosis.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "service/common/json.h"
#include "service/vault/grant_events.h"

namespace tokenbroker {
namespace {

using Result = DiagnosisStep::Result;

// Exchange Online's resource: tokens for IMAP carry one of these audiences.
constexpr absl::string_view kExchangeAudiences[] = {"https://outlook.office365.com", "https://outlook.office.com"};

std::string When(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

std::string Days(absl::Duration d) { return absl::StrCat(absl::ToInt64Hours(d) / 24, " days"); }

// A JWT's claims (the payload read, not verified: the IMAP server verifies
// the token; this only reads what the provider put in it). nullopt when the
// token is not a JWT (some providers' tokens are opaque).
std::optional<google::protobuf::Struct> Claims(const Secret& token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token.Reveal(), '.');
  if (parts.size() != 3) return std::nullopt;
  std::string json;
  if (!absl::WebSafeBase64Unescape(parts[1], &json)) return std::nullopt;
  absl::StatusOr<google::protobuf::Struct> claims = ParseJsonObject(json, "the token's claims");
  WipeString(json);
  if (!claims.ok()) return std::nullopt;
  return *std::move(claims);
}

// A claim's strings: a string ("a b" split on spaces, as scp) or an array.
std::vector<std::string> ClaimStrings(const google::protobuf::Struct& claims, const char* name) {
  std::vector<std::string> out;
  const google::protobuf::Value* v = JsonField(claims, name);
  if (v == nullptr) return out;
  if (v->has_string_value()) return absl::StrSplit(v->string_value(), ' ', absl::SkipEmpty());
  if (v->has_list_value()) {
    for (const auto& item : v->list_value().values()) {
      if (item.has_string_value()) out.push_back(item.string_value());
    }
  }
  return out;
}

bool Contains(const std::vector<std::string>& list, absl::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// A directory id looks like a GUID; a tenant given by domain name cannot be
// compared with the token's tid.
bool LooksLikeGuid(absl::string_view s) {
  return s.size() == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-';
}

class Checklist {
 public:
  // Adds a step; returns whether it passed.
  bool Add(absl::string_view name, Result result, std::string detail, std::string fix = "") {
    report_.steps.push_back(DiagnosisStep{std::string(name), result, std::move(detail), std::move(fix)});
    return result == Result::kPassed;
  }
  bool Pass(absl::string_view name, std::string detail) { return Add(name, Result::kPassed, std::move(detail)); }
  bool Fail(absl::string_view name, std::string detail, std::string fix) {
    return Add(name, Result::kFailed, std::move(detail), std::move(fix));
  }
  void Skip(absl::string_view name, std::string why) { Add(name, Result::kSkipped, std::move(why)); }
  GrantDiagnosisReport& report() { return report_; }

 private:
  GrantDiagnosisReport report_;
};

// The credential step: some credential of the app is accepted and stays
// valid for a while.
void CheckCredential(const App& app, absl::Time now, Checklist& list) {
  if (app.credentials.empty()) {
    list.Skip("credential", absl::StrCat("app \"", app.id, "\" has no credential (a public client)"));
    return;
  }
  const AppCredential* best = nullptr;
  std::vector<std::string> unusable;
  for (const AppCredential& c : app.credentials) {
    if (c.failing) {
      unusable.push_back(absl::StrCat(c.id, ": refused (", c.last_error.message, ")"));
    } else if (c.not_after <= now) {
      unusable.push_back(absl::StrCat(c.id, ": expired ", When(c.not_after)));
    } else if (best == nullptr || c.not_after > best->not_after) {
      best = &c;
    }
  }
  const std::string add = absl::StrCat("add a working one with `tokenbrokerctl app add-credential ", app.id,
                                       "` (for Microsoft, a new client secret or certificate under App registrations "
                                       "→ Certificates & secrets), then remove the old one");
  if (best == nullptr) {
    list.Fail("credential", absl::StrCat("no credential of app \"", app.id, "\" works: ", absl::StrJoin(unusable, "; ")),
              add);
    return;
  }
  const std::string kind(CredentialKindName(best->kind));
  if (best->not_after == absl::InfiniteFuture()) {
    list.Pass("credential", absl::StrCat(best->id, " (", kind, ") does not expire"));
  } else if (best->not_after - now < kCredentialExpiryWarning) {
    list.Fail("credential",
              absl::StrCat(best->id, " (", kind, ") expires ", When(best->not_after), ", in ",
                           Days(best->not_after - now), "; no credential of the app is valid for longer"),
              add);
  } else {
    list.Pass("credential", absl::StrCat(best->id, " (", kind, ") valid until ", When(best->not_after), " (",
                                         Days(best->not_after - now), ")"));
  }
}

// The claims step (Microsoft): audience, permission, tenant.
void CheckClaims(const App& app, const Grant& grant, const Secret& token, Checklist& list) {
  if (app.provider != Provider::kMicrosoft) {
    list.Skip("claims", absl::StrCat("the token's claims are checked for Microsoft only (this app is ",
                                     ProviderName(app.provider), ")"));
    return;
  }
  std::optional<google::protobuf::Struct> claims = Claims(token);
  if (!claims.has_value()) {
    list.Skip("claims", "the token is not a JWT; its claims cannot be read");
    return;
  }
  const std::string audience = JsonString(*claims, "aud");
  const std::string tenant = JsonString(*claims, "tid");
  const bool app_only = grant.kind == GrantKind::kAppOnly;
  std::vector<std::string> problems, fixes;
  if (std::find(std::begin(kExchangeAudiences), std::end(kExchangeAudiences), audience) ==
      std::end(kExchangeAudiences)) {
    problems.push_back(absl::StrCat("the audience is \"", audience, "\", not Exchange Online (",
                                    kExchangeAudiences[0], ")"));
    fixes.push_back(absl::StrCat("the grant asks for the wrong resource (scopes: ", absl::StrJoin(grant.scopes, " "),
                                 "): recreate it with the default scopes (",
                                 app_only ? "https://outlook.office365.com/.default"
                                          : "offline_access https://outlook.office.com/IMAP.AccessAsUser.All",
                                 ")"));
  }
  if (app_only) {
    const std::vector<std::string> roles = ClaimStrings(*claims, "roles");
    if (!Contains(roles, "IMAP.AccessAsApp")) {
      problems.push_back(absl::StrCat("the token has no IMAP.AccessAsApp role (roles: ",
                                      roles.empty() ? "none" : absl::StrJoin(roles, " "), ")"));
      fixes.push_back(
          "give the app the application permission IMAP.AccessAsApp and grant admin consent: App registrations → API "
          "permissions → Add a permission → APIs my organization uses → Office 365 Exchange Online → Application "
          "permissions → IMAP.AccessAsApp → Grant admin consent");
    }
  } else {
    const std::vector<std::string> scopes = ClaimStrings(*claims, "scp");
    if (!Contains(scopes, "IMAP.AccessAsUser.All")) {
      problems.push_back(absl::StrCat("the token has no IMAP.AccessAsUser.All scope (scp: ",
                                      scopes.empty() ? "none" : absl::StrJoin(scopes, " "), ")"));
      fixes.push_back(absl::StrCat("add the delegated permission IMAP.AccessAsUser.All to the app (API permissions) "
                                   "and ",
                                   ConsentAgainCommands(grant)));
    }
  }
  if (LooksLikeGuid(app.tenant) && !tenant.empty() && !absl::EqualsIgnoreCase(tenant, app.tenant)) {
    problems.push_back(absl::StrCat("the token is from tenant ", tenant, ", not the app's ", app.tenant));
    fixes.push_back("check the app's tenant");
  }
  WipeJsonStrings(*claims);
  if (!problems.empty()) {
    list.Fail("claims", absl::StrJoin(problems, "; "), absl::StrJoin(fixes, "; "));
    return;
  }
  list.Pass("claims", absl::StrCat("audience ", audience, ", ",
                                   app_only ? "role IMAP.AccessAsApp" : "scope IMAP.AccessAsUser.All",
                                   tenant.empty() ? "" : absl::StrCat(", tenant ", tenant)));
}

// What to do when the IMAP server refused the token at AUTHENTICATE.
std::string AuthenticateFix(const App& app, const Grant& grant) {
  const std::string imap_enabled =
      absl::StrCat("`Set-CASMailbox -Identity ", grant.mailbox, " -ImapEnabled $true` if IMAP is off for it");
  switch (app.provider) {
    case Provider::kMicrosoft:
      if (grant.kind == GrantKind::kAppOnly) {
        return absl::StrCat(
            "Exchange has no service principal for this app, or it was created with the App Registration's object "
            "id instead of the Enterprise Application's: in Exchange Online PowerShell run `New-ServicePrincipal "
            "-AppId ",
            app.client_id,
            " -ObjectId <the object id under Entra ID → Enterprise applications → this app>` (`Get-ServicePrincipal` "
            "lists them); then ",
            imap_enabled);
      }
      return absl::StrCat("the mailbox refused the signed-in user: check that the user who consented is ",
                          grant.mailbox, " or has `Add-MailboxPermission -Identity ", grant.mailbox,
                          " -User <user> -AccessRights FullAccess`, and ", imap_enabled);
    case Provider::kGoogle:
      return "enable IMAP in the mailbox's Gmail settings; for a service account, check that domain-wide "
             "delegation grants https://mail.google.com/ to its client id";
    case Provider::kOidc:
      break;
  }
  return "the IMAP server refused the token: check its OAuth2 set-up (issuer, audience, the claim it takes the "
         "user name from)";
}

// What to do when the mailbox refused an accepted token (Exchange's "User
// is authenticated but not connected").
std::string MailboxPermissionFix(const App& app, const Grant& grant) {
  if (app.provider == Provider::kMicrosoft && grant.kind == GrantKind::kAppOnly) {
    return absl::StrCat("give the app's service principal rights on the mailbox: `Add-MailboxPermission -Identity ",
                        grant.mailbox, " -User <service principal id> -AccessRights FullAccess`");
  }
  return absl::StrCat("the signed-in user has no access to ", grant.mailbox, ": `Add-MailboxPermission -Identity ",
                      grant.mailbox, " -User <user> -AccessRights FullAccess`, or consent as the mailbox's user");
}

}  // namespace

bool GrantDiagnosisReport::passed() const {
  return std::all_of(steps.begin(), steps.end(), [](const DiagnosisStep& s) { return s.result == Result::kPassed; });
}

absl::string_view DiagnosisResultName(DiagnosisStep::Result result) {
  switch (result) {
    case Result::kPassed:
      return "passed";
    case Result::kFailed:
      return "failed";
    case Result::kSkipped:
      return "skipped";
  }
  return "unknown";
}

GrantDiagnosis::GrantDiagnosis(Vault& vault, TokenManager& tokens, const Clock& clock, MailPoolOptions options,
                               ImapOpener opener)
    : vault_(vault),
      tokens_(tokens),
      clock_(clock),
      options_(std::move(options)),
      opener_(opener ? std::move(opener) : ImapOpener(&ImapSession::Open)) {}

absl::StatusOr<GrantDiagnosisReport> GrantDiagnosis::Run(absl::string_view grant_id, absl::string_view folder) {
  absl::StatusOr<Grant> grant = vault_.GetGrant(grant_id);
  if (!grant.ok()) return grant.status();
  absl::StatusOr<App> app = vault_.GetApp(grant->app);
  if (!app.ok()) return app.status();
  const absl::Time now = clock_.Now();
  Checklist list;
  list.report().grant_id = grant->id;
  constexpr absl::string_view kLater[] = {"token", "claims", "imap_connect", "authenticate", "select"};
  auto skip_from = [&list, &kLater](size_t first, const std::string& why) {
    for (size_t i = first; i < std::size(kLater); ++i) list.Skip(kLater[i], why);
  };

  // 1. The grant's state.
  const std::string state(GrantStateName(grant->state));
  if (grant->state == GrantState::kActive) {
    list.Pass("grant", absl::StrCat(GrantKindName(grant->kind), " grant of app \"", app->id, "\" for ",
                                    grant->mailbox, ", active"));
  } else {
    const std::string why = grant->last_error.message.empty() ? "" : absl::StrCat(": ", grant->last_error.message);
    list.Fail("grant", absl::StrCat("the grant is ", state, why), GrantRemedy(*grant));
  }

  // 2. The app's credential.
  CheckCredential(*app, now, list);

  // 3. A token, fresh from the provider (a cached one may predate a fix).
  // A grant the broker refuses tokens for (disabled, waiting for or needing
  // consent) goes no further: the grant step said what to do.
  if (grant->state == GrantState::kDisabled || grant->state == GrantState::kPendingConsent ||
      grant->state == GrantState::kNeedsReconsent) {
    skip_from(0, absl::StrCat("needs a grant that gets tokens (this one is ", state, ")"));
    return std::move(list.report());
  }
  absl::StatusOr<AccessToken> token = tokens_.GetAccessToken(grant->id, absl::Minutes(1));
  if (token.ok() && token->issue_time < now) {  // cached before this diagnosis
    absl::Status refreshed = tokens_.RefreshRefused(grant->id, token->token);
    token = refreshed.ok() ? tokens_.GetAccessToken(grant->id, absl::Minutes(1)) : absl::StatusOr<AccessToken>(refreshed);
  }
  if (!token.ok()) {
    list.Fail("token", absl::StrCat("no token: ", token.status().message()),
              absl::IsUnavailable(token.status())
                  ? "the identity provider could not be reached or is throttling: check the network path to it "
                    "and try again"
                  : "the identity provider's answer (and its AADSTS code, see docs/tokens.md) names what to fix");
    skip_from(1, "needs a token");
    return std::move(list.report());
  }
  list.Pass("token", absl::StrCat("a token for ", token->mailbox, ", valid until ", When(token->expire_time)));

  // 4. What the token says.
  CheckClaims(*app, *grant, token->token, list);

  // 5. The IMAP server.
  absl::StatusOr<ImapServer> server = ImapServerFor(*app, options_);
  if (!server.ok()) {
    list.Fail("imap_connect", std::string(server.status().message()),
              absl::StrCat("set the app's IMAP server (`tokenbrokerctl app create ", app->id, " ... --imap-host`)"));
    skip_from(3, "needs an IMAP connection");
    return std::move(list.report());
  }
  const std::string where = absl::StrCat(server->host, ":", server->port);
  absl::StatusOr<std::unique_ptr<ImapSession>> session = opener_(*server);
  if (!session.ok()) {
    const std::string message(session.status().message());
    const bool certificate = absl::StrContains(absl::AsciiStrToLower(message), "certificate");
    list.Fail("imap_connect", absl::StrCat("could not open ", where, ": ", message),
              certificate ? "the server's certificate is not trusted or not for this host name: check the host, or "
                            "set mail.ca_file to the CA that signed it"
                          : absl::StrCat("check that ", server->host, " resolves and that outbound TCP ",
                                         server->port, " is allowed (firewall, proxy)"));
    skip_from(3, "needs an IMAP connection");
    return std::move(list.report());
  }
  list.Pass("imap_connect", absl::StrCat(where, " answered over ", server->starttls ? "STARTTLS" : "TLS",
                                         " with a trusted certificate"));

  // 6. AUTHENTICATE, and 7. a harmless command after it.
  const std::string mechanism = options_.mechanism == SaslMechanism::kXoauth2 ? "XOAUTH2" : "OAUTHBEARER";
  absl::Status auth = (*session)->Authenticate(token->mailbox, token->token, options_.mechanism);
  if (absl::IsPermissionDenied(auth)) {
    // Exchange accepted AUTHENTICATE and refused the first command after it.
    list.Pass("authenticate", absl::StrCat("the server accepted the token for ", token->mailbox, " (", mechanism, ")"));
    list.Fail("select", std::string(auth.message()), MailboxPermissionFix(*app, *grant));
    return std::move(list.report());
  }
  if (!auth.ok()) {
    list.Fail("authenticate", std::string(auth.message()),
              absl::IsUnauthenticated(auth) ? AuthenticateFix(*app, *grant) : "try again; the server failed");
    skip_from(4, "needs a logged-in session");
    return std::move(list.report());
  }
  list.Pass("authenticate", absl::StrCat("the server accepted the token for ", token->mailbox, " (", mechanism, ")"));
  absl::StatusOr<ImapSelected> selected = (*session)->Examine(folder);
  if (selected.ok()) {
    list.Pass("select", absl::StrCat(folder, " examined read-only: ", selected->exists, " messages, UIDVALIDITY ",
                                     selected->uid_validity));
  } else if (absl::IsPermissionDenied(selected.status())) {
    list.Fail("select", std::string(selected.status().message()), MailboxPermissionFix(*app, *grant));
  } else if (absl::IsNotFound(selected.status())) {
    list.Fail("select", std::string(selected.status().message()),
              absl::StrCat("the mailbox has no folder \"", folder, "\": list them with `tokenbrokerctl mail folders ",
                           grant->id, "`"));
  } else {
    list.Fail("select", std::string(selected.status().message()), "try again; the server failed");
  }
  (void)(*session)->Logout();
  return std::move(list.report());
}

}  // namespace tokenbroker
