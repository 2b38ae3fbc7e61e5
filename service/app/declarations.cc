#include "service/common/time_util.h"
#include "service/app/declarations.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "service/common/files.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

using config::v1::DeclaredApp;
using config::v1::DeclaredCredential;
using config::v1::DeclaredGrant;

absl::Status Invalid(const std::string& key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
}

absl::StatusOr<Secret> ReadDeclaredSecret(const std::string& key, const std::string& path) {
  absl::StatusOr<Secret> secret = ReadSecretFile(path);
  if (!secret.ok()) return Invalid(key, secret.status().message());
  return secret;
}

absl::StatusOr<CredentialInput> ReadCredential(const DeclaredCredential& d, const std::string& key) {
  CredentialInput c;
  c.id = d.id();
  const int kinds = !d.client_secret_file().empty() + !d.certificate_file().empty() +
                    !d.service_account_key_file().empty();
  if (kinds != 1) {
    return Invalid(key, "give exactly one of client_secret_file, certificate_file (with private_key_file) or "
                        "service_account_key_file");
  }
  if (!d.client_secret_file().empty()) {
    c.kind = CredentialKind::kClientSecret;
    ASSIGN_OR_RETURN(c.secret, ReadDeclaredSecret(key + ".client_secret_file", d.client_secret_file()));
    std::optional<absl::Time> not_after = ParseDateOrTime(d.not_after());
    if (!not_after.has_value()) {
      return Invalid(key + ".not_after", "required for client secrets: a date such as 2027-11-27");
    }
    c.not_after = *not_after;
  } else if (!d.certificate_file().empty()) {
    c.kind = CredentialKind::kCertificate;
    absl::StatusOr<std::string> cert = ReadFileToString(d.certificate_file());
    if (!cert.ok()) return Invalid(key + ".certificate_file", cert.status().message());
    c.certificate_pem = *cert;
    if (d.private_key_file().empty()) return Invalid(key + ".private_key_file", "required with certificate_file");
    ASSIGN_OR_RETURN(c.secret, ReadDeclaredSecret(key + ".private_key_file", d.private_key_file()));
  } else {
    c.kind = CredentialKind::kServiceAccountKey;
    ASSIGN_OR_RETURN(c.secret, ReadDeclaredSecret(key + ".service_account_key_file", d.service_account_key_file()));
  }
  return c;
}

App AppSpec(const DeclaredApp& d) {
  App app;
  app.id = d.id();
  app.provider = static_cast<Provider>(d.provider());
  app.tenant = d.tenant();
  app.issuer = d.issuer();
  app.authority_host = d.authority_host();
  if (app.provider == Provider::kMicrosoft && app.authority_host.empty()) app.authority_host = "login.microsoftonline.com";
  app.client_id = d.client_id();
  app.imap_host = d.imap_host();
  app.imap_port = static_cast<int>(d.imap_port());
  app.imap_security = d.imap_starttls() ? ImapSecurity::kStartTls : ImapSecurity::kImplicitTls;
  app.token_endpoint = d.token_endpoint();
  app.authorization_endpoint = d.authorization_endpoint();
  app.device_authorization_endpoint = d.device_authorization_endpoint();
  app.assertion_algorithm = d.assertion_algorithm() == DeclaredApp::ASSERTION_ALGORITHM_RS256
                                ? AssertionAlgorithm::kRs256
                                : AssertionAlgorithm::kPs256;
  app.client_secret_auth = d.client_secret_auth() == DeclaredApp::CLIENT_SECRET_AUTH_BASIC ? ClientSecretAuth::kBasic
                                                                                          : ClientSecretAuth::kPost;
  app.labels.insert(d.labels().begin(), d.labels().end());
  return app;
}

bool SameFields(const App& a, const App& b) {
  return a.provider == b.provider && a.tenant == b.tenant && a.issuer == b.issuer &&
         a.authority_host == b.authority_host && a.client_id == b.client_id && a.imap_host == b.imap_host &&
         a.imap_port == b.imap_port && a.imap_security == b.imap_security && a.token_endpoint == b.token_endpoint &&
         a.authorization_endpoint == b.authorization_endpoint &&
         a.device_authorization_endpoint == b.device_authorization_endpoint &&
         a.assertion_algorithm == b.assertion_algorithm && a.client_secret_auth == b.client_secret_auth &&
         a.labels == b.labels;
}

}  // namespace

absl::Status DeclarationReconciler::ReconcileApp(int index, ReconcileReport& report) {
  const DeclaredApp& d = config_.apps(index);
  const std::string key = absl::StrCat("apps[", index, "]");
  if (d.credentials_size() == 0) return Invalid(key + ".credentials", "at least one credential");
  std::vector<CredentialInput> inputs;
  for (int j = 0; j < d.credentials_size(); ++j) {
    ASSIGN_OR_RETURN(CredentialInput c, ReadCredential(d.credentials(j), absl::StrCat(key, ".credentials[", j, "]")));
    inputs.push_back(std::move(c));
  }
  App spec = AppSpec(d);
  absl::StatusOr<App> existing = vault_.GetApp(d.id());
  if (absl::IsNotFound(existing.status())) {
    absl::StatusOr<App> created = vault_.CreateApp(spec, std::move(inputs), RecordSource::kConfig);
    if (!created.ok()) return Invalid(key, created.status().message());
    ++report.created;
    return absl::OkStatus();
  }
  if (!existing.ok()) return existing.status();
  if (existing->source != RecordSource::kConfig) {
    return Invalid(key + ".id", absl::StrCat("app \"", d.id(),
                                             "\" exists and was created over the API; delete it or rename one"));
  }
  // Unchanged when the fields, the credential list and every secret are the
  // same (secrets compared in constant time after opening).
  bool same = SameFields(*existing, spec) && existing->credentials.size() == inputs.size();
  for (size_t j = 0; same && j < inputs.size(); ++j) {
    const AppCredential& old = existing->credentials[j];
    const CredentialInput& now = inputs[j];
    same = old.id == now.id && old.kind == now.kind && old.certificate_pem == now.certificate_pem &&
           (now.kind != CredentialKind::kClientSecret || old.not_after == now.not_after);
    if (same) {
      absl::StatusOr<Secret> opened = vault_.OpenCredentialSecret(*existing, old);
      same = opened.ok() && *opened == now.secret;
    }
  }
  if (same) {
    ++report.unchanged;
    return absl::OkStatus();
  }
  absl::StatusOr<App> replaced = vault_.ReplaceApp(*existing, spec, std::move(inputs));
  if (!replaced.ok()) return Invalid(key, replaced.status().message());
  ++report.updated;
  return absl::OkStatus();
}

absl::Status DeclarationReconciler::ReconcileGrant(int index, ReconcileReport& report) {
  const DeclaredGrant& d = config_.grants(index);
  const std::string key = absl::StrCat("grants[", index, "]");
  Grant spec;
  spec.id = d.id();
  spec.app = d.app();
  spec.mailbox = d.mailbox();
  spec.kind = d.kind() == DeclaredGrant::KIND_SERVICE_ACCOUNT ? GrantKind::kServiceAccount : GrantKind::kAppOnly;
  spec.subject = d.subject();
  spec.scopes.assign(d.scopes().begin(), d.scopes().end());
  spec.labels.insert(d.labels().begin(), d.labels().end());
  absl::StatusOr<Grant> existing = vault_.GetGrant(d.id());
  if (existing.ok() && existing->source != RecordSource::kConfig) {
    return Invalid(key + ".id", absl::StrCat("grant \"", d.id(),
                                             "\" exists and was created over the API; delete it or rename one"));
  }
  if (existing.ok()) {
    // Recreate when what was declared changed; the grant has no secret to lose.
    Grant want = spec;
    if (want.scopes.empty()) want.scopes = existing->scopes;
    if (want.subject.empty()) want.subject = existing->subject;
    if (existing->app == want.app && existing->mailbox == want.mailbox && existing->kind == want.kind &&
        existing->subject == want.subject && existing->scopes == want.scopes && existing->labels == want.labels) {
      ++report.unchanged;
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(vault_.DeleteGrant(d.id(), RecordSource::kConfig));
    ++report.updated;
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  } else {
    ++report.created;
  }
  absl::StatusOr<Grant> created = vault_.CreateGrant(spec, RecordSource::kConfig);
  if (!created.ok()) return Invalid(key, created.status().message());
  return absl::OkStatus();
}

absl::StatusOr<ReconcileReport> DeclarationReconciler::Reconcile() {
  ReconcileReport report;
  std::set<std::string> declared_apps, declared_grants;
  for (int i = 0; i < config_.apps_size(); ++i) {
    if (!declared_apps.insert(config_.apps(i).id()).second) {
      return Invalid(absl::StrCat("apps[", i, "].id"), absl::StrCat("\"", config_.apps(i).id(), "\" is declared twice"));
    }
    RETURN_IF_ERROR(ReconcileApp(i, report));
  }
  for (int i = 0; i < config_.grants_size(); ++i) {
    if (!declared_grants.insert(config_.grants(i).id()).second) {
      return Invalid(absl::StrCat("grants[", i, "].id"),
                     absl::StrCat("\"", config_.grants(i).id(), "\" is declared twice"));
    }
    RETURN_IF_ERROR(ReconcileGrant(i, report));
  }
  // What the file no longer declares goes: grants first, then apps.
  // A page at a time: a fleet of 100,000 grants is not read into memory at
  // once (the deletions come after the listing, whose pages go by id).
  constexpr size_t kPage = 1000;
  std::vector<std::string> undeclared;
  GrantFilter page{"", std::nullopt, "", kPage};
  while (true) {
    ASSIGN_OR_RETURN(std::vector<Grant> grants, vault_.ListGrants(page));
    for (const Grant& g : grants) {
      if (g.source == RecordSource::kConfig && !declared_grants.count(g.id)) undeclared.push_back(g.id);
    }
    if (grants.size() < kPage) break;
    page.after_id = grants.back().id;
  }
  for (const std::string& id : undeclared) {
    RETURN_IF_ERROR(vault_.DeleteGrant(id, RecordSource::kConfig));
    ++report.deleted;
  }
  ASSIGN_OR_RETURN(std::vector<App> apps, vault_.ListApps());
  for (const App& a : apps) {
    if (a.source != RecordSource::kConfig || declared_apps.count(a.id)) continue;
    absl::Status deleted = vault_.DeleteApp(a.id, /*force=*/false, RecordSource::kConfig);
    if (deleted.ok()) {
      ++report.deleted;
    } else if (deleted.code() == absl::StatusCode::kFailedPrecondition) {
      report.kept.push_back(absl::StrCat("app ", a.id, ": ", deleted.message()));
    } else {
      return deleted;
    }
  }
  return report;
}

}  // namespace tokenbroker
