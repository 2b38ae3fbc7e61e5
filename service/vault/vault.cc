#include "service/vault/vault.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"
#include "service/crypto/certificate.h"

namespace tokenbroker {
namespace {

constexpr char kDefaultAuthorityHost[] = "login.microsoftonline.com";

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status ValidateLabels(absl::string_view field, const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : labels) {
    if (key.empty() || key.size() > 63) return Invalid(field, "label keys must be 1-63 characters");
    if (value.size() > 256) return Invalid(absl::StrCat(field, ".", key), "label values must be at most 256 characters");
    for (char c : key + value) {
      if (static_cast<unsigned char>(c) < 0x20) return Invalid(absl::StrCat(field, ".", key), "control characters are not allowed");
    }
  }
  return absl::OkStatus();
}

bool HasControlCharacters(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

std::vector<std::string> Vault::DefaultScopes(Provider provider, GrantKind kind) {
  switch (provider) {
    case Provider::kMicrosoft:
      if (kind == GrantKind::kAppOnly) return {"https://outlook.office365.com/.default"};
      return {"offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"};
    case Provider::kGoogle:
      return {"https://mail.google.com/"};
    case Provider::kOidc:
      return kind == GrantKind::kDelegated ? std::vector<std::string>{"openid", "offline_access"}
                                           : std::vector<std::string>{};
  }
  return {};
}

absl::Status Vault::ValidateApp(const App& app) const {
  RETURN_IF_ERROR(ValidateId("app.id", app.id));
  if (app.client_id.empty()) return Invalid("app.client_id", "required");
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"app.client_id", &app.client_id}, {"app.tenant", &app.tenant},
        {"app.issuer", &app.issuer}, {"app.authority_host", &app.authority_host}, {"app.imap.host", &app.imap_host},
        {"app.oidc_endpoints.token_endpoint", &app.token_endpoint}}) {
    if (value->size() > 1024 || HasControlCharacters(*value)) return Invalid(field, "too long or contains control characters");
  }
  switch (app.provider) {
    case Provider::kMicrosoft:
      if (app.tenant.empty()) return Invalid("app.tenant", "required for Microsoft apps (tenant GUID or domain)");
      if (absl::StrContains(app.tenant, "/")) return Invalid("app.tenant", "must be a tenant GUID or domain, not a URL");
      break;
    case Provider::kOidc:
      if (app.issuer.empty() && app.token_endpoint.empty()) {
        return Invalid("app.issuer", "required for OIDC apps (or give oidc_endpoints.token_endpoint)");
      }
      break;
    case Provider::kGoogle:
      break;
    default:
      return Invalid("app.provider", "required: microsoft, google or oidc");
  }
  if (app.imap_port < 0 || app.imap_port > 65535) return Invalid("app.imap.port", "must be 0-65535");
  return ValidateLabels("app.labels", app.labels);
}

absl::StatusOr<AppCredential> Vault::SealCredential(const App& app, CredentialInput input,
                                                    absl::string_view field) const {
  RETURN_IF_ERROR(ValidateId(absl::StrCat(field, ".id"), input.id));
  if (input.secret.empty()) return Invalid(field, "the secret is empty");
  if (input.secret.size() > kMaxSecretBytes) return Invalid(field, "the secret is larger than 64 KiB");
  AppCredential c;
  c.id = input.id;
  c.kind = input.kind;
  c.create_time = clock_.Now();
  switch (input.kind) {
    case CredentialKind::kClientSecret:
      if (app.provider == Provider::kGoogle) {
        // Google client secrets are fine (delegated grants); nothing to parse.
      }
      if (input.not_after == absl::InfiniteFuture()) {
        return Invalid(absl::StrCat(field, ".not_after"),
                       "required for client secrets: the expiry shown by the provider (Entra: at most 24 months)");
      }
      if (input.not_after <= clock_.Now()) return Invalid(absl::StrCat(field, ".not_after"), "is already past");
      c.not_after = input.not_after;
      break;
    case CredentialKind::kCertificate: {
      if (app.provider == Provider::kGoogle) return Invalid(field, "Google apps take a service-account key, not a certificate");
      if (input.not_after != absl::InfiniteFuture()) {
        return Invalid(absl::StrCat(field, ".not_after"), "must be empty for certificates (it is read from the certificate)");
      }
      absl::StatusOr<CertificateInfo> info = ParseCertificatePem(input.certificate_pem);
      if (!info.ok()) return Invalid(absl::StrCat(field, ".certificate.certificate_pem"), info.status().message());
      absl::Status matches = CheckRsaPrivateKeyMatchesCertificate(input.certificate_pem, input.secret);
      if (!matches.ok()) return Invalid(absl::StrCat(field, ".certificate.private_key_pem"), matches.message());
      if (info->not_after <= clock_.Now()) {
        return Invalid(absl::StrCat(field, ".certificate.certificate_pem"),
                       absl::StrCat("the certificate expired at ", absl::FormatTime(info->not_after)));
      }
      c.not_after = info->not_after;
      c.thumbprint_sha1 = info->thumbprint_sha1;
      c.thumbprint_sha256 = info->thumbprint_sha256;
      c.subject = info->subject;
      c.certificate_pem = input.certificate_pem;
      break;
    }
    case CredentialKind::kServiceAccountKey: {
      if (app.provider != Provider::kGoogle) return Invalid(field, "service-account keys are for Google apps only");
      absl::StatusOr<ServiceAccountKey> key = ParseServiceAccountKey(input.secret);
      if (!key.ok()) return Invalid(absl::StrCat(field, ".service_account_key_json"), key.status().message());
      c.service_account_email = key->client_email;
      c.not_after = input.not_after;
      break;
    }
  }
  ASSIGN_OR_RETURN(c.sealed_secret, sealer_.Seal(input.secret.Reveal(), CredentialSecretAad(app.id, c.id)));
  return c;
}

absl::StatusOr<App> Vault::CreateApp(App spec, std::vector<CredentialInput> credentials, RecordSource source) {
  if (spec.provider == Provider::kMicrosoft && spec.authority_host.empty()) spec.authority_host = kDefaultAuthorityHost;
  RETURN_IF_ERROR(ValidateApp(spec));
  if (credentials.empty()) return Invalid("credentials", "an app needs at least one credential");
  spec.credentials.clear();
  for (size_t i = 0; i < credentials.size(); ++i) {
    const std::string field = absl::StrCat("credentials[", i, "]");
    for (const AppCredential& existing : spec.credentials) {
      if (existing.id == credentials[i].id) {
        return Invalid(absl::StrCat(field, ".id"), absl::StrCat("\"", existing.id, "\" is used twice"));
      }
    }
    ASSIGN_OR_RETURN(AppCredential sealed, SealCredential(spec, std::move(credentials[i]), field));
    spec.credentials.push_back(std::move(sealed));
  }
  spec.source = source;
  spec.create_time = spec.update_time = clock_.Now();
  RETURN_IF_ERROR(store_.CreateApp(spec));
  spec.version = 1;
  return spec;
}

absl::StatusOr<App> Vault::ReplaceApp(const App& current, App spec, std::vector<CredentialInput> credentials) {
  spec.id = current.id;
  if (spec.provider == Provider::kMicrosoft && spec.authority_host.empty()) spec.authority_host = kDefaultAuthorityHost;
  RETURN_IF_ERROR(ValidateApp(spec));
  if (credentials.empty()) return Invalid("credentials", "an app needs at least one credential");
  spec.credentials.clear();
  for (size_t i = 0; i < credentials.size(); ++i) {
    ASSIGN_OR_RETURN(AppCredential sealed,
                     SealCredential(spec, std::move(credentials[i]), absl::StrCat("credentials[", i, "]")));
    // Keep what the broker learnt about an unchanged credential.
    for (const AppCredential& old : current.credentials) {
      if (old.id == sealed.id) sealed.create_time = old.create_time;
    }
    spec.credentials.push_back(std::move(sealed));
  }
  spec.source = current.source;
  spec.create_time = current.create_time;
  spec.update_time = clock_.Now();
  spec.version = current.version;
  ASSIGN_OR_RETURN(spec.version, store_.UpdateApp(spec));
  return spec;
}

absl::Status Vault::RefuseDeclared(absl::string_view what, absl::string_view id, RecordSource source,
                                   RecordSource caller) {
  if (source == RecordSource::kConfig && caller == RecordSource::kApi) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " \"", id, "\" is declared in the configuration file; change it there (it is reconciled on change)"));
  }
  return absl::OkStatus();
}

void Vault::OnGrantChanged(GrantListener listener) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.push_back(std::move(listener));
}

void Vault::GrantChanged(absl::string_view grant_id) {
  // A shared token of the grant as it was must not be served any more. Both
  // are best effort: the writer's own caches are told below whatever happens.
  (void)store_.DeleteSharedAccessToken(grant_id);
  (void)store_.PublishChange(absl::StrCat("grant:", grant_id));
  TellListeners(grant_id, ChangeOrigin::kThisReplica);
}

void Vault::ApplyRemoteChange(absl::string_view change) {
  if (change == "*") {
    TellListeners("*", ChangeOrigin::kOtherReplica);
  } else if (absl::ConsumePrefix(&change, "grant:")) {
    TellListeners(change, ChangeOrigin::kOtherReplica);
  }
}

void Vault::SetKeyringReloader(std::function<absl::Status()> reload) {
  absl::MutexLock lock(&listeners_mu_);
  reload_keyring_ = std::move(reload);
}

absl::StatusOr<Secret> Vault::Open(absl::string_view sealed, absl::string_view associated_data) const {
  absl::StatusOr<Secret> opened = sealer_.Open(sealed, associated_data);
  if (opened.ok()) return opened;
  absl::StatusOr<std::string> key_id = Sealer::KeyIdOf(sealed);
  if (!key_id.ok() || sealer_.keyring()->Find(*key_id) != nullptr) return opened;
  std::function<absl::Status()> reload;
  {
    absl::MutexLock lock(&listeners_mu_);
    reload = reload_keyring_;
  }
  if (reload == nullptr || !reload().ok()) return opened;
  return sealer_.Open(sealed, associated_data);
}

void Vault::TellListeners(absl::string_view grant_id, ChangeOrigin origin) {
  std::vector<GrantListener> listeners;
  {
    absl::MutexLock lock(&listeners_mu_);
    listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(grant_id, origin);
}

absl::Status Vault::RecordCredentialHealth(const App& app) {
  absl::StatusOr<int64_t> written = store_.UpdateApp(app);
  if (!written.ok() && !absl::IsAborted(written.status())) return written.status();
  return absl::OkStatus();
}

absl::Status Vault::DeleteApp(absl::string_view id, bool force, RecordSource caller) {
  ASSIGN_OR_RETURN(App app, store_.GetApp(id));
  RETURN_IF_ERROR(RefuseDeclared("app", id, app.source, caller));
  GrantFilter of_app;
  of_app.app = std::string(id);
  ASSIGN_OR_RETURN(std::vector<Grant> grants, store_.ListGrants(of_app));
  RETURN_IF_ERROR(store_.DeleteApp(id, force));
  for (const Grant& g : grants) GrantChanged(g.id);
  return absl::OkStatus();
}

absl::Status Vault::DeleteGrant(absl::string_view id, RecordSource caller) {
  ASSIGN_OR_RETURN(Grant grant, store_.GetGrant(id));
  RETURN_IF_ERROR(RefuseDeclared("grant", id, grant.source, caller));
  RETURN_IF_ERROR(store_.DeleteGrant(id));
  GrantChanged(id);
  return absl::OkStatus();
}

absl::StatusOr<App> Vault::AddCredential(absl::string_view app_id, CredentialInput credential, size_t position) {
  ASSIGN_OR_RETURN(App app, store_.GetApp(app_id));
  RETURN_IF_ERROR(RefuseDeclared("app", app_id, app.source, RecordSource::kApi));
  for (const AppCredential& c : app.credentials) {
    if (c.id == credential.id) {
      return absl::AlreadyExistsError(absl::StrCat("app \"", app_id, "\" already has a credential \"", c.id, "\""));
    }
  }
  ASSIGN_OR_RETURN(AppCredential sealed, SealCredential(app, std::move(credential), "credential"));
  position = std::min(position, app.credentials.size());
  app.credentials.insert(app.credentials.begin() + static_cast<long>(position), std::move(sealed));
  app.update_time = clock_.Now();
  ASSIGN_OR_RETURN(app.version, store_.UpdateApp(app));
  return app;
}

absl::StatusOr<App> Vault::RemoveCredential(absl::string_view app_id, absl::string_view credential_id) {
  ASSIGN_OR_RETURN(App app, store_.GetApp(app_id));
  RETURN_IF_ERROR(RefuseDeclared("app", app_id, app.source, RecordSource::kApi));
  auto it = std::find_if(app.credentials.begin(), app.credentials.end(),
                         [&](const AppCredential& c) { return c.id == credential_id; });
  if (it == app.credentials.end()) {
    return absl::NotFoundError(absl::StrCat("app \"", app_id, "\" has no credential \"", credential_id, "\""));
  }
  if (app.credentials.size() == 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "\"", credential_id, "\" is the last credential of app \"", app_id, "\"; add its replacement first"));
  }
  app.credentials.erase(it);
  app.update_time = clock_.Now();
  ASSIGN_OR_RETURN(app.version, store_.UpdateApp(app));
  return app;
}

absl::StatusOr<App> Vault::ReorderCredentials(absl::string_view app_id, const std::vector<std::string>& order) {
  ASSIGN_OR_RETURN(App app, store_.GetApp(app_id));
  RETURN_IF_ERROR(RefuseDeclared("app", app_id, app.source, RecordSource::kApi));
  if (order.size() != app.credentials.size()) {
    return Invalid("credentials", absl::StrCat("name every credential of the app exactly once (", app.credentials.size(),
                                               " credentials, ", order.size(), " given)"));
  }
  std::vector<AppCredential> reordered;
  for (size_t i = 0; i < order.size(); ++i) {
    auto it = std::find_if(app.credentials.begin(), app.credentials.end(),
                           [&](const AppCredential& c) { return c.id == order[i]; });
    bool repeated = std::any_of(reordered.begin(), reordered.end(),
                                [&](const AppCredential& c) { return c.id == order[i]; });
    if (it == app.credentials.end() || repeated) {
      return Invalid(absl::StrCat("credentials[", i, "]"),
                     absl::StrCat("\"", order[i], "\" is not a credential of the app, or is named twice"));
    }
    reordered.push_back(*it);
  }
  app.credentials = std::move(reordered);
  app.update_time = clock_.Now();
  ASSIGN_OR_RETURN(app.version, store_.UpdateApp(app));
  return app;
}

absl::StatusOr<Secret> Vault::OpenCredentialSecret(const App& app, const AppCredential& credential) const {
  return Open(credential.sealed_secret, CredentialSecretAad(app.id, credential.id));
}

absl::Status Vault::ValidateGrant(const App& app, Grant& grant) const {
  RETURN_IF_ERROR(ValidateId("grant.id", grant.id));
  if (grant.mailbox.empty()) return Invalid("grant.mailbox", "required");
  if (grant.mailbox.size() > 320 || HasControlCharacters(grant.mailbox) || absl::StrContains(grant.mailbox, " ")) {
    return Invalid("grant.mailbox", "must be a mailbox address without spaces or control characters");
  }
  if (app.provider != Provider::kOidc && !absl::StrContains(grant.mailbox, "@")) {
    return Invalid("grant.mailbox", "must be an e-mail address (user@domain)");
  }
  for (size_t i = 0; i < grant.scopes.size(); ++i) {
    const std::string& s = grant.scopes[i];
    if (s.empty() || absl::StrContains(s, " ") || HasControlCharacters(s)) {
      return Invalid(absl::StrCat("grant.scopes[", i, "]"), "must be one non-empty scope without spaces");
    }
  }
  if (grant.scopes.empty()) grant.scopes = DefaultScopes(app.provider, grant.kind);
  if (grant.kind == GrantKind::kServiceAccount) {
    if (app.provider != Provider::kGoogle) return Invalid("grant.kind", "service-account grants need a Google app");
    if (grant.subject.empty()) grant.subject = grant.mailbox;
  } else if (!grant.subject.empty()) {
    return Invalid("grant.subject", "only service-account grants have a subject");
  }
  if (grant.kind == GrantKind::kAppOnly && app.provider == Provider::kGoogle) {
    return Invalid("grant.kind", "Google has no app-only IMAP access; use a service-account grant");
  }
  return ValidateLabels("grant.labels", grant.labels);
}

absl::StatusOr<Grant> Vault::CreateGrant(Grant spec, RecordSource source) {
  if (spec.kind != GrantKind::kAppOnly && spec.kind != GrantKind::kServiceAccount) {
    return Invalid("grant.kind", "app_only or service_account; delegated grants come from consent or import");
  }
  RETURN_IF_ERROR(ValidateId("grant.app", spec.app));
  absl::StatusOr<App> app = store_.GetApp(spec.app);
  if (absl::IsNotFound(app.status())) return Invalid("grant.app", absl::StrCat("app \"", spec.app, "\" does not exist"));
  if (!app.ok()) return app.status();
  RETURN_IF_ERROR(ValidateGrant(*app, spec));
  spec.state = GrantState::kActive;
  spec.last_error = {};
  spec.sealed_refresh_token.clear();
  spec.source = source;
  spec.create_time = clock_.Now();
  RETURN_IF_ERROR(store_.CreateGrant(spec));
  spec.version = 1;
  GrantChanged(spec.id);
  return spec;
}

absl::StatusOr<App> Vault::PrepareDelegatedGrant(Grant& spec) {
  spec.kind = GrantKind::kDelegated;
  RETURN_IF_ERROR(ValidateId("grant.id", spec.id));
  RETURN_IF_ERROR(ValidateId("grant.app", spec.app));
  absl::StatusOr<App> app = store_.GetApp(spec.app);
  if (absl::IsNotFound(app.status())) return Invalid("grant.app", absl::StrCat("app \"", spec.app, "\" does not exist"));
  if (!app.ok()) return app.status();
  RETURN_IF_ERROR(ValidateGrant(*app, spec));
  absl::StatusOr<Grant> existing = store_.GetGrant(spec.id);
  if (existing.ok() && (existing->kind != GrantKind::kDelegated || existing->app != spec.app)) {
    return absl::FailedPreconditionError(
        absl::StrCat("grant \"", spec.id, "\" exists with another app or kind; delete it first"));
  }
  if (existing.ok()) RETURN_IF_ERROR(RefuseDeclared("grant", spec.id, existing->source, RecordSource::kApi));
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
  return *std::move(app);
}

absl::StatusOr<Grant> Vault::MarkConsentPending(const Grant& spec) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<Grant> existing = store_.GetGrant(spec.id);
    if (absl::IsNotFound(existing.status())) {
      Grant pending = spec;
      pending.kind = GrantKind::kDelegated;
      pending.state = GrantState::kPendingConsent;
      pending.last_error = {};
      pending.sealed_refresh_token.clear();
      pending.source = RecordSource::kApi;
      pending.create_time = clock_.Now();
      absl::Status created = store_.CreateGrant(pending);
      if (absl::IsAlreadyExists(created)) continue;
      RETURN_IF_ERROR(created);
      pending.version = 1;
      GrantChanged(pending.id);
      return pending;
    }
    if (!existing.ok()) return existing.status();
    return ApplyGrantEvent(spec.id, GrantEvent::kConsentStarted, std::nullopt, {.read = &*existing});
  }
  return absl::AbortedError(absl::StrCat("grant \"", spec.id, "\" kept changing; retry"));
}

absl::Status Vault::RecordConsentFailure(absl::string_view grant_id, const ProviderError& error) {
  return ApplyGrantEvent(grant_id, GrantEvent::kConsentFailed, error).status();
}

absl::StatusOr<Grant> Vault::UpdateGrant(absl::string_view id, const std::function<absl::StatusOr<bool>(Grant&)>& change,
                                         GrantUpdate options) {
  std::optional<Grant> read;
  if (options.read != nullptr) read = *options.read;
  for (int attempt = 0; attempt < options.attempts; ++attempt) {
    if (!read.has_value()) {
      ASSIGN_OR_RETURN(Grant fresh, store_.GetGrant(id));
      read = std::move(fresh);
    }
    Grant grant = *std::move(read);
    read.reset();
    const GrantState before = grant.state;
    ASSIGN_OR_RETURN(const bool write, change(grant));
    if (!write) return grant;
    absl::StatusOr<int64_t> written = options.lease != nullptr ? store_.UpdateGrantUnderLease(grant, *options.lease)
                                                               : store_.UpdateGrant(grant);
    if (written.ok()) {
      grant.version = *written;
      if (options.notify || grant.state != before) GrantChanged(grant.id);
      return grant;
    }
    if (!absl::IsAborted(written.status())) return written.status();
  }
  return absl::AbortedError(absl::StrCat("grant \"", id, "\" kept changing; retry"));
}

absl::StatusOr<Grant> Vault::ApplyGrantEvent(absl::string_view id, GrantEvent event, std::optional<ProviderError> error,
                                             GrantUpdate options) {
  return UpdateGrant(
      id,
      [&](Grant& grant) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(const GrantState next, NextGrantState(grant.state, event));
        bool changed = next != grant.state;
        grant.state = next;
        if (error.has_value() && grant.last_error != *error) {
          grant.last_error = *error;
          changed = true;
        }
        return changed;
      },
      options);
}

absl::Status Vault::RecordRefresh(const Grant& grant, const RefreshLease* lease) {
  return UpdateGrant(
             grant.id,
             [](Grant& g) -> absl::StatusOr<bool> {
               ASSIGN_OR_RETURN(g.state, NextGrantState(g.state, GrantEvent::kRefreshed));
               g.last_error = {};
               return true;
             },
             {.read = &grant, .lease = lease, .attempts = 1})
      .status();
}

absl::StatusOr<Grant> Vault::ImportGrant(Grant spec, const Secret& refresh_token, bool replace) {
  if (refresh_token.empty()) return Invalid("refresh_token", "required");
  if (refresh_token.size() > kMaxSecretBytes) return Invalid("refresh_token", "larger than 64 KiB");
  spec.kind = GrantKind::kDelegated;
  RETURN_IF_ERROR(ValidateId("grant.app", spec.app));
  absl::StatusOr<App> app = store_.GetApp(spec.app);
  if (absl::IsNotFound(app.status())) return Invalid("grant.app", absl::StrCat("app \"", spec.app, "\" does not exist"));
  if (!app.ok()) return app.status();
  RETURN_IF_ERROR(ValidateGrant(*app, spec));
  const absl::Time now = clock_.Now();
  ASSIGN_OR_RETURN(std::string sealed, sealer_.Seal(refresh_token.Reveal(), RefreshTokenAad(spec.id)));
  if (replace) {
    // Whatever changed (the mailbox perhaps), caches of the grant go.
    absl::StatusOr<Grant> replaced = UpdateGrant(
        spec.id,
        [&](Grant& existing) -> absl::StatusOr<bool> {
          if (existing.kind != GrantKind::kDelegated || existing.app != spec.app) {
            return absl::FailedPreconditionError(
                absl::StrCat("grant \"", spec.id, "\" exists with another app or kind; delete it first"));
          }
          ASSIGN_OR_RETURN(existing.state, NextGrantState(existing.state, GrantEvent::kConsented));
          existing.sealed_refresh_token = sealed;
          existing.mailbox = spec.mailbox;
          existing.scopes = spec.scopes;
          existing.last_error = {};
          existing.consent_time = now;
          return true;
        },
        {.notify = true});
    if (!absl::IsNotFound(replaced.status())) return replaced;
  }
  spec.sealed_refresh_token = std::move(sealed);
  spec.state = GrantState::kActive;
  spec.last_error = {};
  spec.source = RecordSource::kApi;
  spec.create_time = spec.consent_time = now;
  RETURN_IF_ERROR(store_.CreateGrant(spec));
  spec.version = 1;
  GrantChanged(spec.id);
  return spec;
}

absl::StatusOr<Grant> Vault::SetGrantEnabled(absl::string_view id, bool enabled) {
  return ApplyGrantEvent(id, enabled ? GrantEvent::kEnabled : GrantEvent::kDisabled);
}

absl::StatusOr<Secret> Vault::OpenRefreshToken(const Grant& grant) const {
  if (grant.sealed_refresh_token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("grant \"", grant.id, "\" has no refresh token"));
  }
  return Open(grant.sealed_refresh_token, RefreshTokenAad(grant.id));
}

absl::StatusOr<Grant> Vault::StoreRefreshToken(Grant grant, const Secret& refresh_token, const RefreshLease* lease) {
  ASSIGN_OR_RETURN(std::string sealed, sealer_.Seal(refresh_token.Reveal(), RefreshTokenAad(grant.id)));
  const std::string presented = grant.sealed_refresh_token;
  return UpdateGrant(
      grant.id,
      [&](Grant& g) -> absl::StatusOr<bool> {
        // Another change in between (an admin's, a consent error) must not
        // lose the rotated token: re-applied to the fresh read, unless the
        // refresh token itself was replaced (re-consent, perhaps for another
        // mailbox), which wins.
        if (g.sealed_refresh_token != presented) {
          return absl::AbortedError(absl::StrCat("the refresh token of grant \"", g.id, "\" was replaced meanwhile"));
        }
        ASSIGN_OR_RETURN(g.state, NextGrantState(g.state, GrantEvent::kRefreshed));
        g.last_error = {};
        g.last_refresh_time = grant.last_refresh_time;
        g.refresh_token_last_used_time = grant.refresh_token_last_used_time;
        g.sealed_refresh_token = sealed;
        return true;
      },
      {.read = &grant, .lease = lease});
}

namespace {
std::string BoundAccessTokenAad(const Grant& grant) {
  return absl::StrCat(AccessTokenAad(grant.id), "/", grant.mailbox);
}
}  // namespace

absl::StatusOr<std::string> Vault::SealAccessToken(const Grant& grant, const Secret& token) const {
  return sealer_.Seal(token.Reveal(), BoundAccessTokenAad(grant));
}

absl::StatusOr<std::string> Vault::SealConsent(absl::string_view key, const Secret& payload) const {
  return sealer_.Seal(payload.Reveal(), ConsentAad(key));
}

absl::StatusOr<Secret> Vault::OpenConsent(const PendingConsent& consent) const {
  return Open(consent.sealed, ConsentAad(consent.key));
}

absl::StatusOr<Secret> Vault::OpenAccessToken(const Grant& grant, const SharedAccessToken& token) const {
  return Open(token.sealed, BoundAccessTokenAad(grant));
}

absl::StatusOr<KeyRotationReport> Vault::RotateKeys() {
  KeyRotationReport report;
  report.active_key_id = sealer_.active_key_id();
  // A value written concurrently is caught by the next pass.
  for (int pass = 0; pass < 3; ++pass) {
    ASSIGN_OR_RETURN(std::vector<SealedField> fields, store_.ListSealedFields());
    bool changed_underneath = false;
    report.keys_still_in_use.clear();
    report.resealed = 0;
    for (const SealedField& field : fields) {
      absl::StatusOr<std::string> key_id = Sealer::KeyIdOf(field.sealed);
      if (!key_id.ok()) {
        return absl::DataLossError(absl::StrCat("sealed value of ", field.Aad(), " is damaged (not a sealed value)"));
      }
      // Every value is opened and re-sealed, also those already under the
      // active key: a rotation is a full integrity check of the store.
      ASSIGN_OR_RETURN(Secret plain, sealer_.Open(field.sealed, field.Aad()));
      ASSIGN_OR_RETURN(std::string resealed, sealer_.Seal(plain.Reveal(), field.Aad()));
      ASSIGN_OR_RETURN(bool replaced, store_.ReplaceSealedField(field, resealed));
      if (replaced) {
        ++report.resealed;
      } else {
        changed_underneath = true;
        if (*key_id != report.active_key_id) report.keys_still_in_use.insert(*key_id);
      }
    }
    if (!changed_underneath) break;
  }
  return report;
}

}  // namespace tokenbroker
