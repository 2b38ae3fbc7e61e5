// tokenbrokerctl app, grant and keys: the credential vault from the command
// line. Secrets are read from files or standard input, never from arguments
// (which other users can see in the process list and shells keep in history).
#include <sys/stat.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/ctl/command_util.h"
#include "client/ctl/grant_file.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "service/common/time_util.h"
#include "service/common/files.h"
#include "service/crypto/keyring.h"

namespace tokenbroker::ctl {
namespace {

using google::protobuf::util::TimeUtil;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string When(const google::protobuf::Timestamp& t, bool present) {
  if (!present) return "never";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", ToTime(t), absl::UTCTimeZone());
}

// "2027-11-27T00:00:00Z (in 365 days)" or "(expired 3 days ago)".
std::string Expiry(const google::protobuf::Timestamp& t, bool present) {
  if (!present) return "no expiry";
  const absl::Duration left = ToTime(t) - absl::Now();
  const int64_t days = absl::ToInt64Hours(absl::AbsDuration(left)) / 24;
  return absl::StrCat(When(t, true), left < absl::ZeroDuration() ? absl::StrCat(" (EXPIRED ", days, " days ago)")
                                                                 : absl::StrCat(" (in ", days, " days)"));
}

absl::StatusOr<google::protobuf::Timestamp> ParseDate(const std::string& flag, const std::string& text) {
  std::optional<absl::Time> t = ParseDateOrTime(text);
  if (!t.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a date such as 2027-11-27 or 2027-11-27T12:00:00Z, not \"", text, "\""));
  }
  return TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(*t));
}

std::string ProviderText(v1::Provider p) {
  switch (p) {
    case v1::PROVIDER_MICROSOFT:
      return "microsoft";
    case v1::PROVIDER_GOOGLE:
      return "google";
    case v1::PROVIDER_OIDC:
      return "oidc";
    default:
      return "unspecified";
  }
}

std::string KindText(v1::AppCredential::Kind k) {
  switch (k) {
    case v1::AppCredential::KIND_CLIENT_SECRET:
      return "client_secret";
    case v1::AppCredential::KIND_CERTIFICATE:
      return "certificate";
    case v1::AppCredential::KIND_SERVICE_ACCOUNT_KEY:
      return "service_account_key";
    default:
      return "unspecified";
  }
}

std::string Lower(std::string s, const std::string& prefix) {
  if (s.rfind(prefix, 0) == 0) s = s.substr(prefix.size());
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat(k, "=", v));
  std::sort(parts.begin(), parts.end());
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

void PrintApp(const v1::App& app, std::ostream& out) {
  out << "app " << app.id() << " (" << ProviderText(app.provider()) << ", from " << app.source() << ")\n";
  auto row = [&out](const std::string& k, const std::string& v) {
    if (!v.empty()) out << absl::StrFormat("  %-16s %s\n", k + ":", v);
  };
  row("tenant", app.tenant());
  row("issuer", app.issuer());
  row("authority host", app.authority_host());
  row("client id", app.client_id());
  if (app.has_imap()) {
    row("imap", absl::StrCat(app.imap().host(), ":", app.imap().port(),
                             app.imap().security() == v1::ImapEndpoint::SECURITY_STARTTLS ? " (STARTTLS)" : ""));
  }
  row("token endpoint", app.oidc_endpoints().token_endpoint());
  if (app.provider() == v1::PROVIDER_MICROSOFT) {
    row("assertion", app.assertion_algorithm() == v1::ASSERTION_ALGORITHM_RS256 ? "RS256 with x5t"
                                                                                  : "PS256 with x5t#S256");
  }
  if (app.client_secret_auth() == v1::CLIENT_SECRET_AUTH_BASIC) row("client secret sent", "HTTP Basic");
  row("labels", Labels(app.labels()));
  row("created", When(app.create_time(), app.has_create_time()));
  out << "  credentials, in the order they are tried:\n";
  int n = 0;
  for (const v1::AppCredential& c : app.credentials()) {
    out << absl::StrFormat("    %d. %-20s %-20s expires %s  %s\n", ++n, c.id(), KindText(c.kind()),
                           Expiry(c.not_after(), c.has_not_after()),
                           c.state() == v1::AppCredential::STATE_FAILING ? "FAILING" : "ok");
    if (!c.thumbprint_sha1().empty()) out << "       x5t       " << c.thumbprint_sha1() << "\n";
    if (!c.thumbprint_sha256().empty()) out << "       x5t#S256  " << c.thumbprint_sha256() << "\n";
    if (!c.subject().empty()) out << "       subject   " << c.subject() << "\n";
    if (!c.service_account_email().empty()) out << "       account   " << c.service_account_email() << "\n";
    if (c.has_last_error()) out << "       error     " << c.last_error().message() << "\n";
  }
}

}  // namespace

void PrintGrant(const v1::Grant& g, std::ostream& out) {
  out << "grant " << g.id() << " (" << Lower(v1::GrantKind_Name(g.kind()), "GRANT_KIND_") << ", from " << g.source()
      << ")\n";
  auto row = [&out](const std::string& k, const std::string& v) {
    if (!v.empty()) out << absl::StrFormat("  %-25s %s\n", k + ":", v);
  };
  row("app", g.app());
  row("mailbox", g.mailbox());
  row("subject", g.subject());
  row("state", Lower(v1::GrantState_Name(g.state()), "GRANT_STATE_"));
  if (g.has_last_error()) {
    row("last error", absl::StrCat(g.last_error().oauth_error(),
                                   g.last_error().provider_code() ? absl::StrCat(" (", g.last_error().provider_code(), ")")
                                                                  : "",
                                   ": ", g.last_error().message()));
  }
  row("scopes", absl::StrJoin(g.scopes(), " "));
  row("labels", Labels(g.labels()));
  row("created", When(g.create_time(), g.has_create_time()));
  if (g.kind() == v1::GRANT_KIND_DELEGATED) {
    row("consented", When(g.consent_time(), g.has_consent_time()));
    row("refresh token last used", When(g.refresh_token_last_used_time(), g.has_refresh_token_last_used_time()));
  }
  row("last refresh", When(g.last_refresh_time(), g.has_last_refresh_time()));
}

namespace {

// The credential flags shared by `app create` and `app add-credential`.
struct CredentialFlags {
  std::string id, client_secret_file, not_after, certificate, private_key, service_account_key;
  void Declare(FlagSet& f) {
    f.String("credential-id", &id, "ID", "the credential's id (default: secret-1, cert-1 or key-1)");
    f.String("client-secret-file", &client_secret_file, "FILE", "read the client secret from FILE, or - for stdin");
    f.String("not-after", &not_after, "DATE", "when the client secret expires, as the provider shows it");
    f.String("certificate", &certificate, "FILE", "the certificate, PEM");
    f.String("private-key", &private_key, "FILE", "its unencrypted RSA private key, PEM (or - for stdin)");
    f.String("service-account-key", &service_account_key, "FILE", "a Google service-account key file (JSON)");
  }
  absl::StatusOr<v1::AppCredentialInput> Build() const {
    v1::AppCredentialInput in;
    const int kinds = !client_secret_file.empty() + !certificate.empty() + !service_account_key.empty();
    if (kinds != 1) {
      return absl::InvalidArgumentError(
          "give exactly one credential: --client-secret-file, --certificate with --private-key, or "
          "--service-account-key");
    }
    if (!client_secret_file.empty()) {
      in.set_id(id.empty() ? "secret-1" : id);
      absl::StatusOr<Secret> secret = ReadSecretInput("--client-secret-file", client_secret_file);
      if (!secret.ok()) return secret.status();
      in.set_client_secret(std::string(secret->Reveal()));
      if (not_after.empty()) {
        return absl::InvalidArgumentError(
            "--not-after: required with a client secret: the expiry the provider shows (Entra: Certificates & "
            "secrets)");
      }
      absl::StatusOr<google::protobuf::Timestamp> t = ParseDate("--not-after", not_after);
      if (!t.ok()) return t.status();
      *in.mutable_not_after() = *t;
    } else if (!certificate.empty()) {
      in.set_id(id.empty() ? "cert-1" : id);
      if (private_key.empty()) return absl::InvalidArgumentError("--private-key: required with --certificate");
      absl::StatusOr<std::string> cert = ReadInputFile("--certificate", certificate);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<Secret> key = ReadSecretInput("--private-key", private_key);
      if (!key.ok()) return key.status();
      in.mutable_certificate()->set_certificate_pem(*cert);
      in.mutable_certificate()->set_private_key_pem(std::string(key->Reveal()));
    } else {
      in.set_id(id.empty() ? "key-1" : id);
      absl::StatusOr<Secret> key = ReadSecretInput("--service-account-key", service_account_key);
      if (!key.ok()) return key.status();
      in.set_service_account_key_json(std::string(key->Reveal()));
    }
    return in;
  }
};

}  // namespace

absl::Status ParseLabels(const std::vector<std::string>& labels, google::protobuf::Map<std::string, std::string>* out) {
  for (const std::string& l : labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--label: expected KEY=VALUE, not \"", l, "\""));
    }
    (*out)[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return absl::OkStatus();
}

namespace {

Command AppCreate() {
  struct State {
    std::string provider, tenant, issuer, authority_host, client_id, token_endpoint, authorization_endpoint,
        device_endpoint, imap_host, assertion, secret_auth;
    int imap_port = 0;
    bool imap_starttls = false;
    std::vector<std::string> labels;
    CredentialFlags credential;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "create";
  c.summary = "register an app with its first credential";
  c.description =
      "Registers an OAuth app (a client registration at the provider) with one credential.\n"
      "Secrets are read from a file or from standard input (-), never from the command line.\n\n"
      "Examples:\n"
      "  tokenbrokerctl app create contoso --provider microsoft --tenant contoso.onmicrosoft.com \\\n"
      "      --client-id 11111111-2222-3333-4444-555555555555 --client-secret-file - --not-after 2027-11-27\n"
      "  tokenbrokerctl app create contoso-cert --provider microsoft --tenant contoso.onmicrosoft.com \\\n"
      "      --client-id ... --certificate app.crt --private-key app.key";
  c.usage = "APP --provider microsoft|google|oidc --client-id ID [flags] CREDENTIAL";
  c.flags = [s](FlagSet& f) {
    f.String("provider", &s->provider, "NAME", "microsoft, google or oidc");
    f.String("tenant", &s->tenant, "TENANT", "Microsoft: tenant GUID or domain");
    f.String("client-id", &s->client_id, "ID", "the application (client) id");
    f.String("authority-host", &s->authority_host, "HOST[:PORT]",
             "Microsoft: the login host without a scheme, e.g. login.microsoftonline.us (national clouds)");
    f.String("issuer", &s->issuer, "URL", "OIDC: the issuer URL");
    f.String("token-endpoint", &s->token_endpoint, "URL", "OIDC: explicit token endpoint");
    f.String("authorization-endpoint", &s->authorization_endpoint, "URL", "OIDC: explicit authorization endpoint");
    f.String("device-endpoint", &s->device_endpoint, "URL", "OIDC: explicit device authorization endpoint");
    f.String("imap-host", &s->imap_host, "HOST", "override the provider's IMAP host");
    f.Int("imap-port", &s->imap_port, "PORT", "override the IMAP port");
    f.Bool("imap-starttls", &s->imap_starttls, "use STARTTLS instead of implicit TLS");
    f.String("assertion", &s->assertion, "ALG", "certificate assertions: ps256 (default) or rs256");
    f.String("secret-auth", &s->secret_auth, "HOW",
             "client secrets: post (default, in the form body) or basic (HTTP Basic)");
    f.StringList("label", &s->labels, "KEY=VALUE", "a label");
    s->credential.Declare(f);
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "app create", "expected exactly one APP id");
    v1::CreateAppRequest request;
    v1::App* app = request.mutable_app();
    app->set_id(args[0]);
    if (s->provider == "microsoft") {
      app->set_provider(v1::PROVIDER_MICROSOFT);
    } else if (s->provider == "google") {
      app->set_provider(v1::PROVIDER_GOOGLE);
    } else if (s->provider == "oidc") {
      app->set_provider(v1::PROVIDER_OIDC);
    } else {
      return WrongArgs(ctx, "app create", "--provider: expected microsoft, google or oidc");
    }
    app->set_tenant(s->tenant);
    app->set_client_id(s->client_id);
    app->set_authority_host(s->authority_host);
    app->set_issuer(s->issuer);
    if (!s->token_endpoint.empty() || !s->authorization_endpoint.empty() || !s->device_endpoint.empty()) {
      app->mutable_oidc_endpoints()->set_token_endpoint(s->token_endpoint);
      app->mutable_oidc_endpoints()->set_authorization_endpoint(s->authorization_endpoint);
      app->mutable_oidc_endpoints()->set_device_authorization_endpoint(s->device_endpoint);
    }
    if (!s->imap_host.empty() || s->imap_port != 0 || s->imap_starttls) {
      app->mutable_imap()->set_host(s->imap_host);
      app->mutable_imap()->set_port(s->imap_port);
      app->mutable_imap()->set_security(s->imap_starttls ? v1::ImapEndpoint::SECURITY_STARTTLS
                                                         : v1::ImapEndpoint::SECURITY_IMPLICIT_TLS);
    }
    if (s->assertion == "rs256") {
      app->set_assertion_algorithm(v1::ASSERTION_ALGORITHM_RS256);
    } else if (!s->assertion.empty() && s->assertion != "ps256") {
      return WrongArgs(ctx, "app create", "--assertion: expected ps256 or rs256");
    }
    if (s->secret_auth == "basic") {
      app->set_client_secret_auth(v1::CLIENT_SECRET_AUTH_BASIC);
    } else if (!s->secret_auth.empty() && s->secret_auth != "post") {
      return WrongArgs(ctx, "app create", "--secret-auth: expected post or basic");
    }
    if (absl::Status l = ParseLabels(s->labels, app->mutable_labels()); !l.ok()) {
      return WrongArgs(ctx, "app create", std::string(l.message()));
    }
    absl::StatusOr<v1::AppCredentialInput> credential = s->credential.Build();
    if (!credential.ok()) return WrongArgs(ctx, "app create", std::string(credential.status().message()));
    *request.add_credentials() = std::move(*credential);
    int rc = CallAdmin<v1::CreateAppRequest, v1::App>(ctx, request, &v1::AdminService::Stub::CreateApp, PrintApp);
    WipeString(*request.mutable_credentials(0)->mutable_client_secret());
    return rc;
  };
  return c;
}

Command AppAddCredential() {
  struct State {
    CredentialFlags credential;
    int position = -1;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "add-credential";
  c.summary = "add a credential to an app (for rotation without downtime)";
  c.description =
      "Adds a credential to APP. By default it goes last in the order of trial; --position 0 puts it first.\n"
      "Rotate a client secret: add the new one, check it works, then remove the old one.";
  c.usage = "APP CREDENTIAL [--credential-id ID] [--position N]";
  c.flags = [s](FlagSet& f) {
    s->credential.Declare(f);
    f.Int("position", &s->position, "N", "0-based position in the order of trial (default: last)");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "app add-credential", "expected exactly one APP id");
    v1::AddAppCredentialRequest request;
    request.set_app(args[0]);
    absl::StatusOr<v1::AppCredentialInput> credential = s->credential.Build();
    if (!credential.ok()) return WrongArgs(ctx, "app add-credential", std::string(credential.status().message()));
    *request.mutable_credential() = std::move(*credential);
    if (s->position < 0) {
      request.set_append(true);
    } else {
      request.set_position(static_cast<uint32_t>(s->position));
    }
    return CallAdmin<v1::AddAppCredentialRequest, v1::App>(ctx, request, &v1::AdminService::Stub::AddAppCredential,
                                                           PrintApp);
  };
  return c;
}

}  // namespace

Command AppCommand() {
  Command list;
  list.name = "list";
  list.summary = "list apps with their next credential expiry";
  list.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "app list", "takes no arguments");
    return CallAdmin<v1::ListAppsRequest, v1::ListAppsResponse>(
        ctx, v1::ListAppsRequest(), &v1::AdminService::Stub::ListApps,
        [](const v1::ListAppsResponse& r, std::ostream& out) {
          out << absl::StrFormat("%-24s %-10s %-38s %-5s %s\n", "APP", "PROVIDER", "CLIENT ID", "CREDS", "NEXT EXPIRY");
          for (const v1::App& app : r.apps()) {
            const v1::AppCredential* soonest = nullptr;
            for (const v1::AppCredential& c : app.credentials()) {
              if (c.has_not_after() && (soonest == nullptr || c.not_after().seconds() < soonest->not_after().seconds())) {
                soonest = &c;
              }
            }
            out << absl::StrFormat("%-24s %-10s %-38s %-5d %s\n", app.id(), ProviderText(app.provider()),
                                   app.client_id(), app.credentials_size(),
                                   soonest ? absl::StrCat(soonest->id(), " ", Expiry(soonest->not_after(), true)) : "-");
          }
        });
  };
  Command show;
  show.name = "show";
  show.summary = "show an app and its credentials (never the secrets)";
  show.usage = "APP";
  show.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "app show", "expected exactly one APP id");
    v1::GetAppRequest request;
    request.set_id(args[0]);
    return CallAdmin<v1::GetAppRequest, v1::App>(ctx, request, &v1::AdminService::Stub::GetApp, PrintApp);
  };
  auto force = std::make_shared<bool>(false);
  Command del;
  del.name = "delete";
  del.summary = "delete an app (refused while grants use it, unless --force)";
  del.usage = "APP [--force]";
  del.flags = [force](FlagSet& f) { f.Bool("force", force.get(), "also delete the grants that use the app"); };
  del.run = [force](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "app delete", "expected exactly one APP id");
    v1::DeleteAppRequest request;
    request.set_id(args[0]);
    request.set_force(*force);
    return CallAdmin<v1::DeleteAppRequest, google::protobuf::Empty>(
        ctx, request, &v1::AdminService::Stub::DeleteApp,
        [id = args[0]](const google::protobuf::Empty&, std::ostream& out) { out << "deleted app " << id << "\n"; });
  };
  Command remove;
  remove.name = "remove-credential";
  remove.summary = "remove one credential from an app";
  remove.usage = "APP CREDENTIAL_ID";
  remove.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 2) return WrongArgs(ctx, "app remove-credential", "expected APP and CREDENTIAL_ID");
    v1::RemoveAppCredentialRequest request;
    request.set_app(args[0]);
    request.set_credential(args[1]);
    return CallAdmin<v1::RemoveAppCredentialRequest, v1::App>(ctx, request,
                                                              &v1::AdminService::Stub::RemoveAppCredential, PrintApp);
  };
  Command reorder;
  reorder.name = "reorder";
  reorder.summary = "set the order in which an app's credentials are tried";
  reorder.usage = "APP CREDENTIAL_ID...";
  reorder.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() < 2) return WrongArgs(ctx, "app reorder", "expected APP and every CREDENTIAL_ID in the new order");
    v1::ReorderAppCredentialsRequest request;
    request.set_app(args[0]);
    for (size_t i = 1; i < args.size(); ++i) request.add_credentials(args[i]);
    return CallAdmin<v1::ReorderAppCredentialsRequest, v1::App>(
        ctx, request, &v1::AdminService::Stub::ReorderAppCredentials, PrintApp);
  };
  Command c;
  c.name = "app";
  c.summary = "manage OAuth apps and their credentials";
  c.children = {AppCreate(), list, show, AppAddCredential(), remove, reorder, del};
  return c;
}

namespace {

Command GrantCreate(bool import) {
  struct State {
    std::string app, mailbox, kind, subject, refresh_token_file, from_file;
    std::vector<std::string> scopes, labels;
    bool replace = false;
    bool verify = false;
    bool skip_existing = false;
    int parallel = 8;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = import ? "import" : "create";
  c.summary = import ? "import a delegated grant from an existing refresh token (migrations)"
                     : "create an app-only or service-account grant";
  c.description =
      import ? "Creates a delegated grant for MAILBOX from a refresh token obtained by another tool. The token is\n"
               "read from a file or standard input (-) and sealed at once; it is never shown again.\n"
               "With --replace an existing delegated grant of the same app gets the new token.\n"
               "With --verify the broker redeems the token once before answering, so a token the provider\n"
               "refuses is reported now (the grant is stored either way).\n\n"
               "Many at once: --from-file FILE (or - for stdin), one JSON object per line:\n"
               "  {\"grant\": \"alice\", \"app\": \"contoso\", \"mailbox\": \"alice@contoso.com\", \"refresh_token\": \"...\"}\n"
               "(also \"scopes\": [...], \"labels\": {...}). Failed lines are reported by number and the rest go\n"
               "on; with --skip-existing a grant that exists already counts as done, so a run can be repeated."
             : "Creates a grant that needs no user consent: app-only (Microsoft client credentials; the app\n"
               "needs IMAP.AccessAsApp and Add-MailboxPermission in Exchange) or service-account (Google\n"
               "domain-wide delegation, impersonating --subject, default the mailbox).\n\n"
               "Many at once: --from-file FILE (or - for stdin), one JSON object per line:\n"
               "  {\"grant\": \"shared-1\", \"app\": \"contoso\", \"mailbox\": \"shared-1@contoso.com\"}\n"
               "(also \"kind\", \"subject\", \"scopes\": [...], \"labels\": {...}). Failed lines are reported by\n"
               "number and the rest go on; with --skip-existing a grant that exists already counts as done.";
  c.usage = import ? "GRANT --app APP --mailbox ADDRESS --refresh-token-file FILE|- [--scope S]... [--replace] [--verify]\n"
                     "   or: tokenbrokerctl [global flags] grant import --from-file FILE|- [--parallel N] [--skip-existing] [--replace] [--verify]"
                   : "GRANT --app APP --mailbox ADDRESS [--kind app_only|service_account] [--subject USER]\n"
                     "   or: tokenbrokerctl [global flags] grant create --from-file FILE|- [--parallel N] [--skip-existing]";
  c.flags = [s, import](FlagSet& f) {
    f.String("app", &s->app, "APP", "the app the grant belongs to");
    f.String("mailbox", &s->mailbox, "ADDRESS", "the mailbox (the SASL user name)");
    f.StringList("scope", &s->scopes, "SCOPE", "a scope (default: the provider's IMAP scopes)");
    f.StringList("label", &s->labels, "KEY=VALUE", "a label");
    if (import) {
      f.String("refresh-token-file", &s->refresh_token_file, "FILE", "read the refresh token from FILE, or - for stdin");
      f.Bool("replace", &s->replace, "replace the refresh token of an existing delegated grant");
      f.Bool("verify", &s->verify, "redeem the token once now and report what the provider says");
    } else {
      f.String("kind", &s->kind, "KIND", "app_only (default) or service_account");
      f.String("subject", &s->subject, "USER", "service_account: the user to impersonate");
    }
    f.String("from-file", &s->from_file, "FILE", "many grants, one JSON object a line (see above), or - for stdin");
    f.Int("parallel", &s->parallel, "N", "with --from-file: calls in flight (default 8, at most 64)");
    f.Bool("skip-existing", &s->skip_existing, "with --from-file: a grant that exists already is not a failure");
  };
  c.run = [s, import](Context& ctx, const std::vector<std::string>& args) {
    const std::string path = import ? "grant import" : "grant create";
    if (!s->from_file.empty()) {
      if (!args.empty() || !s->app.empty() || !s->mailbox.empty() || !s->scopes.empty() || !s->labels.empty() ||
          !s->refresh_token_file.empty() || !s->kind.empty() || !s->subject.empty()) {
        return WrongArgs(ctx, path,
                         "--from-file: every line names its grant, app and mailbox; drop GRANT and the flags "
                         "--app, --mailbox, --scope, --label, --refresh-token-file, --kind and --subject");
      }
      if (s->parallel < 1 || s->parallel > 64) return WrongArgs(ctx, path, "--parallel: expected 1 to 64");
      GrantFileOptions options;
      options.path = s->from_file;
      options.import = import;
      options.parallel = s->parallel;
      options.skip_existing = s->skip_existing;
      options.replace = s->replace;
      options.verify = s->verify;
      return EnrolGrantsFromFile(ctx, options);
    }
    if (s->skip_existing) return WrongArgs(ctx, path, "--skip-existing: only with --from-file");
    if (s->parallel != 8) return WrongArgs(ctx, path, "--parallel: only with --from-file");
    if (args.size() != 1) return WrongArgs(ctx, path, "expected exactly one GRANT id");
    v1::Grant grant;
    grant.set_id(args[0]);
    grant.set_app(s->app);
    grant.set_mailbox(s->mailbox);
    for (const std::string& scope : s->scopes) grant.add_scopes(scope);
    if (absl::Status l = ParseLabels(s->labels, grant.mutable_labels()); !l.ok()) {
      return WrongArgs(ctx, path, std::string(l.message()));
    }
    if (import) {
      if (s->refresh_token_file.empty()) return WrongArgs(ctx, path, "--refresh-token-file: required");
      absl::StatusOr<Secret> token = ReadSecretInput("--refresh-token-file", s->refresh_token_file);
      if (!token.ok()) return WrongArgs(ctx, path, std::string(token.status().message()));
      v1::ImportGrantRequest request;
      *request.mutable_grant() = grant;
      request.set_refresh_token(std::string(token->Reveal()));
      request.set_replace(s->replace);
      request.set_verify(s->verify);
      int rc = CallAdmin<v1::ImportGrantRequest, v1::Grant>(ctx, request, &v1::AdminService::Stub::ImportGrant,
                                                            PrintGrant);
      WipeString(*request.mutable_refresh_token());
      return rc;
    }
    if (s->kind.empty() || s->kind == "app_only") {
      grant.set_kind(v1::GRANT_KIND_APP_ONLY);
    } else if (s->kind == "service_account") {
      grant.set_kind(v1::GRANT_KIND_SERVICE_ACCOUNT);
    } else {
      return WrongArgs(ctx, path, "--kind: expected app_only or service_account");
    }
    grant.set_subject(s->subject);
    v1::CreateGrantRequest request;
    *request.mutable_grant() = grant;
    return CallAdmin<v1::CreateGrantRequest, v1::Grant>(ctx, request, &v1::AdminService::Stub::CreateGrant, PrintGrant);
  };
  return c;
}

// A verb that takes one GRANT id and calls `method` with a request whose `id`
// is set.
template <typename Request, typename Response>
Command GrantIdVerb(const std::string& name, const std::string& summary,
                    grpc::Status (v1::AdminService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                    std::function<void(const Response&, std::ostream&)> text) {
  Command c;
  c.name = name;
  c.summary = summary;
  c.usage = "GRANT";
  c.run = [name, method, text](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "grant " + name, "expected exactly one GRANT id");
    Request request;
    request.set_id(args[0]);
    return CallAdmin<Request, Response>(ctx, request, method, text);
  };
  return c;
}

// `grant watch`: one line per grant state change until interrupted.
Command GrantWatchVerb() {
  struct WatchState {
    std::string app;
    bool current = false;
  };
  auto s = std::make_shared<WatchState>();
  Command c;
  c.name = "watch";
  c.summary = "print grant state changes as they happen, until interrupted";
  c.usage = "[--app APP] [--current]";
  c.flags = [s](FlagSet& f) {
    f.String("app", &s->app, "APP", "only the grants of this app");
    f.Bool("current", &s->current, "first the grants that need someone now (needs_reconsent, app_credential_invalid)");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "grant watch", "takes no arguments");
    v1::WatchGrantsRequest request;
    request.set_app(s->app);
    request.set_current(s->current);
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    std::unique_ptr<grpc::ClientContext> context = (*client)->NewContext();
    context->set_deadline(std::chrono::system_clock::time_point::max());  // until interrupted
    auto reader = (*client)->admin().WatchGrants(context.get(), request);
    // The broker answers with its headers once the watch is live.
    reader->WaitForInitialMetadata();
    ctx.err() << "watching grant changes; Ctrl-C to stop" << std::endl;
    google::protobuf::util::JsonPrintOptions json;
    json.preserve_proto_field_names = true;
    v1::GrantChange change;
    while (reader->Read(&change)) {
      std::ostream& out = ctx.out();
      if (ctx.format() == OutputFormat::kJson) {
        std::string line;
        (void)google::protobuf::util::MessageToJsonString(change, &line, json);
        out << line << "\n" << std::flush;
        continue;
      }
      const std::string state =
          change.deleted() ? "deleted" : Lower(v1::GrantState_Name(change.current_grant().state()), "GRANT_STATE_");
      out << When(change.time(), true) << " " << change.grant() << " ";
      if (change.current()) {
        out << state;
      } else if (change.previous_state() == v1::GRANT_STATE_UNSPECIFIED) {
        out << (change.deleted() ? state : "created " + state);
      } else {
        out << Lower(v1::GrantState_Name(change.previous_state()), "GRANT_STATE_") << " -> " << state;
      }
      const std::string& why = change.current_grant().last_error().message();
      if (!why.empty() && !change.deleted() && change.current_grant().state() != v1::GRANT_STATE_ACTIVE) {
        out << ": " << why;
      }
      if (!change.action().empty()) out << "; " << change.action();
      out << "\n" << std::flush;
    }
    grpc::Status status = reader->Finish();
    return ctx.Fail(status.ok() ? absl::UnavailableError("the broker ended the watch; watch again")
                                : FromGrpcStatus(status));
  };
  return c;
}

}  // namespace

Command DiagnoseCommand() {
  auto folder = std::make_shared<std::string>("INBOX");
  Command c;
  c.name = "diagnose";
  c.summary = "check a grant's set-up step by step and say what is missing";
  c.usage = "GRANT [--folder FOLDER]";
  c.description =
      "Runs the broker's checklist for GRANT: its state, the app's credential, a fresh token, the token's claims "
      "(Microsoft: audience, IMAP.AccessAsApp or IMAP.AccessAsUser.All, tenant), the IMAP connection and certificate, "
      "AUTHENTICATE, and FOLDER examined read-only. Each failed step names the set-up step that is missing. Exits 0 "
      "only if every step passed.";
  c.flags = [folder](FlagSet& f) { f.String("folder", folder.get(), "FOLDER", "the folder to examine (INBOX)"); };
  c.run = [folder](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "diagnose", "expected exactly one GRANT id");
    v1::DiagnoseGrantRequest request;
    request.set_id(args[0]);
    request.set_folder(*folder);
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    auto context = (*client)->NewContext();
    v1::DiagnoseGrantResponse response;
    grpc::Status status = (*client)->admin().DiagnoseGrant(context.get(), request, &response);
    if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(response);
    } else {
      std::ostream& out = ctx.out();
      out << "grant " << response.grant() << "\n";
      int passed = 0, failed = 0;
      for (const v1::DiagnosisStep& step : response.steps()) {
        const char* mark = step.result() == v1::DiagnosisStep::RESULT_PASSED   ? "ok  "
                           : step.result() == v1::DiagnosisStep::RESULT_FAILED ? "FAIL"
                                                                                : "skip";
        passed += step.result() == v1::DiagnosisStep::RESULT_PASSED;
        failed += step.result() == v1::DiagnosisStep::RESULT_FAILED;
        out << absl::StrFormat("  %s  %-13s %s\n", mark, step.name(), step.detail());
        if (!step.fix().empty()) out << absl::StrFormat("        %-13s fix: %s\n", "", step.fix());
      }
      out << passed << " of " << response.steps_size() << " steps passed";
      if (failed > 0) out << ", " << failed << " failed";
      out << "\n";
    }
    return response.passed() ? kExitOk : kExitFailure;
  };
  return c;
}

Command GrantCommand() {
  struct ListState {
    std::string app, state;
  };
  auto ls = std::make_shared<ListState>();
  Command list;
  list.name = "list";
  list.summary = "list grants";
  list.usage = "[--app APP] [--state STATE]";
  list.flags = [ls](FlagSet& f) {
    f.String("app", &ls->app, "APP", "only the grants of this app");
    f.String("state", &ls->state, "STATE", "only grants in this state (active, needs_reconsent, disabled, ...)");
  };
  list.run = [ls](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "grant list", "takes no arguments");
    v1::ListGrantsRequest request;
    request.set_app(ls->app);
    if (!ls->state.empty()) {
      std::string upper = "GRANT_STATE_";
      for (char ch : ls->state) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      v1::GrantState state;
      if (!v1::GrantState_Parse(upper, &state) || state == v1::GRANT_STATE_UNSPECIFIED) {
        return WrongArgs(ctx, "grant list",
                         "--state: expected active, pending_consent, needs_reconsent, app_credential_invalid or "
                         "disabled");
      }
      request.set_state(state);
    }
    // Every page of the broker's (1000 grants each), then one list.
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    v1::ListGrantsResponse all;
    do {
      v1::ListGrantsResponse page;
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().ListGrants(context.get(), request, &page);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
      for (v1::Grant& g : *page.mutable_grants()) *all.add_grants() = std::move(g);
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(all);
      return kExitOk;
    }
    std::ostream& out = ctx.out();
    out << absl::StrFormat("%-24s %-20s %-32s %-16s %s\n", "GRANT", "APP", "MAILBOX", "KIND", "STATE");
    for (const v1::Grant& g : all.grants()) {
      out << absl::StrFormat("%-24s %-20s %-32s %-16s %s\n", g.id(), g.app(), g.mailbox(),
                             Lower(v1::GrantKind_Name(g.kind()), "GRANT_KIND_"),
                             Lower(v1::GrantState_Name(g.state()), "GRANT_STATE_"));
    }
    return kExitOk;
  };
  Command c;
  c.name = "grant";
  c.summary = "manage grants (one mailbox's access)";
  c.children = {
      GrantCreate(false),
      GrantCreate(true),
      list,
      GrantWatchVerb(),
      GrantIdVerb<v1::GetGrantRequest, v1::Grant>("show", "show a grant", &v1::AdminService::Stub::GetGrant,
                                                  PrintGrant),
      GrantIdVerb<v1::DisableGrantRequest, v1::Grant>("disable", "stop issuing tokens for a grant",
                                                      &v1::AdminService::Stub::DisableGrant, PrintGrant),
      GrantIdVerb<v1::EnableGrantRequest, v1::Grant>("enable", "re-enable a disabled grant",
                                                     &v1::AdminService::Stub::EnableGrant, PrintGrant),
      GrantIdVerb<v1::DeleteGrantRequest, google::protobuf::Empty>(
          "delete", "delete a grant and its sealed refresh token", &v1::AdminService::Stub::DeleteGrant,
          [](const google::protobuf::Empty&, std::ostream& out) { out << "deleted\n"; }),
  };
  return c;
}

namespace {

// Rewrites a keyring file in place, keeping its mode.
int WriteKeyring(Context& ctx, const std::string& path, const Keyring& ring) {
  struct stat st;
  const mode_t mode = stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0600;
  std::string text = ring.Serialize();
  absl::Status written = WriteFileAtomically(path, text, mode);
  WipeString(text);
  if (!written.ok()) return ctx.Fail(written);
  return kExitOk;
}

}  // namespace

Command KeysCommand() {
  Command rotate;
  rotate.name = "rotate";
  rotate.summary = "re-seal every stored secret under the keyring's active key";
  rotate.description =
      "Makes the broker re-read its keyring file and re-seal every stored secret under the active key, online.\n"
      "Prints how many values were re-sealed and which old keys are still in use (none: they may be removed).\n\n"
      "Rotating the key-encryption key:\n"
      "  1. tokenbrokerctl keys add-key --keyring-file FILE   (or edit the Kubernetes Secret)\n"
      "  2. tokenbrokerctl keys rotate\n"
      "  3. tokenbrokerctl keys remove-key --keyring-file FILE OLD_KEY_ID";
  rotate.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "keys rotate", "takes no arguments");
    return CallAdmin<v1::RotateKeysRequest, v1::RotateKeysResponse>(
        ctx, v1::RotateKeysRequest(), &v1::AdminService::Stub::RotateKeys,
        [](const v1::RotateKeysResponse& r, std::ostream& out) {
          out << "active key: " << r.active_key_id() << "\nre-sealed:  " << r.resealed() << " value(s)\n";
          if (r.keys_still_in_use().empty()) {
            out << "old keys still in use: none (they can be removed from the keyring)\n";
          } else {
            out << "old keys still in use: " << absl::StrJoin(r.keys_still_in_use(), ", ")
                << " (values changed during the rotation; run it again)\n";
          }
        });
  };
  auto file = std::make_shared<std::string>();
  Command add;
  add.name = "add-key";
  add.summary = "add a fresh key to a keyring file and make it active (local file)";
  add.usage = "--keyring-file FILE";
  add.flags = [file](FlagSet& f) { f.String("keyring-file", file.get(), "FILE", "the keyring file to change"); };
  add.run = [file](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty() || file->empty()) return WrongArgs(ctx, "keys add-key", "expected --keyring-file FILE");
    absl::StatusOr<Keyring> ring = Keyring::LoadFile(*file);
    if (!ring.ok()) return ctx.Fail(ring.status());
    absl::StatusOr<Keyring> next = ring->WithNewActiveKey(absl::Now());
    if (!next.ok()) return ctx.Fail(next.status());
    if (int rc = WriteKeyring(ctx, *file, *next); rc != kExitOk) return rc;
    ctx.out() << "added key " << next->active_key_id() << " as the active key of " << *file
              << "\nnext: tokenbrokerctl keys rotate\n";
    return kExitOk;
  };
  Command remove;
  remove.name = "remove-key";
  remove.summary = "remove an old key from a keyring file (local file)";
  remove.usage = "--keyring-file FILE KEY_ID";
  remove.flags = [file](FlagSet& f) { f.String("keyring-file", file.get(), "FILE", "the keyring file to change"); };
  remove.run = [file](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1 || file->empty()) return WrongArgs(ctx, "keys remove-key", "expected --keyring-file FILE KEY_ID");
    absl::StatusOr<Keyring> ring = Keyring::LoadFile(*file);
    if (!ring.ok()) return ctx.Fail(ring.status());
    absl::StatusOr<Keyring> next = ring->WithoutKey(args[0]);
    if (!next.ok()) return ctx.Fail(next.status());
    if (int rc = WriteKeyring(ctx, *file, *next); rc != kExitOk) return rc;
    ctx.out() << "removed key " << args[0] << " from " << *file << "\n";
    return kExitOk;
  };
  Command c;
  c.name = "keys";
  c.summary = "manage the encryption keyring";
  c.children = {rotate, add, remove};
  return c;
}

}  // namespace tokenbroker::ctl
