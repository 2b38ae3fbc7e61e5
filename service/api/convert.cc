#include "service/api/convert.h"

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

// Fills an error message; call only for a non-empty error (the caller's
// mutable_ accessor would otherwise mark an empty one as present).
void ErrorToProto(const ProviderError& e, v1::GrantError* out) {
  out->set_oauth_error(e.oauth_error);
  out->set_provider_code(e.provider_code);
  out->set_message(e.message);
  if (e.time != absl::InfinitePast()) *out->mutable_time() = ToTimestamp(e.time);
}

bool IsSet(absl::Time t) { return t != absl::InfinitePast() && t != absl::InfiniteFuture(); }

// Takes the bytes out of a proto string field and wipes the field.
Secret TakeSecret(std::string* field) {
  Secret s(std::move(*field));
  WipeString(*field);
  return s;
}

}  // namespace

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t nanos = absl::ToUnixNanos(t);
  ts.set_seconds(nanos / 1'000'000'000);
  ts.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  if (ts.nanos() < 0) {
    ts.set_seconds(ts.seconds() - 1);
    ts.set_nanos(ts.nanos() + 1'000'000'000);
  }
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& t, bool present, absl::Time unset) {
  if (!present) return unset;
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

void AppToProto(const App& app, v1::App* out) {
  out->set_id(app.id);
  out->set_provider(static_cast<v1::Provider>(app.provider));
  out->set_tenant(app.tenant);
  out->set_issuer(app.issuer);
  out->set_authority_host(app.authority_host);
  out->set_client_id(app.client_id);
  for (const AppCredential& c : app.credentials) {
    v1::AppCredential* pc = out->add_credentials();
    pc->set_id(c.id);
    pc->set_kind(static_cast<v1::AppCredential::Kind>(c.kind));
    if (IsSet(c.not_after)) *pc->mutable_not_after() = ToTimestamp(c.not_after);
    pc->set_thumbprint_sha1(c.thumbprint_sha1);
    pc->set_thumbprint_sha256(c.thumbprint_sha256);
    pc->set_subject(c.subject);
    pc->set_state(c.failing ? v1::AppCredential::STATE_FAILING : v1::AppCredential::STATE_OK);
    if (!c.last_error.empty()) ErrorToProto(c.last_error, pc->mutable_last_error());
    if (IsSet(c.create_time)) *pc->mutable_create_time() = ToTimestamp(c.create_time);
    pc->set_service_account_email(c.service_account_email);
  }
  if (!app.imap_host.empty() || app.imap_port != 0 || app.imap_security != ImapSecurity::kImplicitTls) {
    out->mutable_imap()->set_host(app.imap_host);
    out->mutable_imap()->set_port(app.imap_port);
    out->mutable_imap()->set_security(app.imap_security == ImapSecurity::kStartTls
                                          ? v1::ImapEndpoint::SECURITY_STARTTLS
                                          : v1::ImapEndpoint::SECURITY_IMPLICIT_TLS);
  }
  if (!app.token_endpoint.empty() || !app.authorization_endpoint.empty() ||
      !app.device_authorization_endpoint.empty()) {
    out->mutable_oidc_endpoints()->set_token_endpoint(app.token_endpoint);
    out->mutable_oidc_endpoints()->set_authorization_endpoint(app.authorization_endpoint);
    out->mutable_oidc_endpoints()->set_device_authorization_endpoint(app.device_authorization_endpoint);
  }
  out->set_assertion_algorithm(app.assertion_algorithm == AssertionAlgorithm::kRs256
                                   ? v1::ASSERTION_ALGORITHM_RS256
                                   : v1::ASSERTION_ALGORITHM_PS256);
  out->set_client_secret_auth(app.client_secret_auth == ClientSecretAuth::kBasic ? v1::CLIENT_SECRET_AUTH_BASIC
                                                                                 : v1::CLIENT_SECRET_AUTH_POST);
  for (const auto& [k, v] : app.labels) (*out->mutable_labels())[k] = v;
  if (IsSet(app.create_time)) *out->mutable_create_time() = ToTimestamp(app.create_time);
  if (IsSet(app.update_time)) *out->mutable_update_time() = ToTimestamp(app.update_time);
  out->set_source(app.source == RecordSource::kConfig ? "config" : "api");
}

absl::StatusOr<App> AppFromProto(const v1::App& in) {
  App app;
  app.id = in.id();
  switch (in.provider()) {
    case v1::PROVIDER_MICROSOFT:
      app.provider = Provider::kMicrosoft;
      break;
    case v1::PROVIDER_GOOGLE:
      app.provider = Provider::kGoogle;
      break;
    case v1::PROVIDER_OIDC:
      app.provider = Provider::kOidc;
      break;
    default:
      return absl::InvalidArgumentError("app.provider: required: PROVIDER_MICROSOFT, PROVIDER_GOOGLE or PROVIDER_OIDC");
  }
  app.tenant = in.tenant();
  app.issuer = in.issuer();
  app.authority_host = in.authority_host();
  app.client_id = in.client_id();
  app.imap_host = in.imap().host();
  app.imap_port = in.imap().port();
  app.imap_security =
      in.imap().security() == v1::ImapEndpoint::SECURITY_STARTTLS ? ImapSecurity::kStartTls : ImapSecurity::kImplicitTls;
  app.token_endpoint = in.oidc_endpoints().token_endpoint();
  app.authorization_endpoint = in.oidc_endpoints().authorization_endpoint();
  app.device_authorization_endpoint = in.oidc_endpoints().device_authorization_endpoint();
  app.assertion_algorithm =
      in.assertion_algorithm() == v1::ASSERTION_ALGORITHM_RS256 ? AssertionAlgorithm::kRs256 : AssertionAlgorithm::kPs256;
  app.client_secret_auth =
      in.client_secret_auth() == v1::CLIENT_SECRET_AUTH_BASIC ? ClientSecretAuth::kBasic : ClientSecretAuth::kPost;
  for (const auto& [k, v] : in.labels()) app.labels[k] = v;
  return app;
}

absl::StatusOr<CredentialInput> CredentialInputFromProto(v1::AppCredentialInput* in, const std::string& field) {
  CredentialInput c;
  c.id = in->id();
  switch (in->secret_case()) {
    case v1::AppCredentialInput::kClientSecret:
      c.kind = CredentialKind::kClientSecret;
      c.secret = TakeSecret(in->mutable_client_secret());
      break;
    case v1::AppCredentialInput::kCertificate:
      c.kind = CredentialKind::kCertificate;
      c.certificate_pem = in->certificate().certificate_pem();
      c.secret = TakeSecret(in->mutable_certificate()->mutable_private_key_pem());
      break;
    case v1::AppCredentialInput::kServiceAccountKeyJson:
      c.kind = CredentialKind::kServiceAccountKey;
      c.secret = TakeSecret(in->mutable_service_account_key_json());
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": one of client_secret, certificate or service_account_key_json is required"));
  }
  c.not_after = FromTimestamp(in->not_after(), in->has_not_after(), absl::InfiniteFuture());
  return c;
}

absl::StatusOr<GrantState> GrantStateFromProto(v1::GrantState state) {
  if (state < v1::GRANT_STATE_ACTIVE || state > v1::GRANT_STATE_DISABLED) {
    return absl::InvalidArgumentError("state: not a grant state");
  }
  return static_cast<GrantState>(state);
}

void GrantToProto(const Grant& g, v1::Grant* out) {
  out->set_id(g.id);
  out->set_app(g.app);
  out->set_mailbox(g.mailbox);
  out->set_kind(static_cast<v1::GrantKind>(g.kind));
  out->set_subject(g.subject);
  for (const std::string& s : g.scopes) out->add_scopes(s);
  out->set_state(static_cast<v1::GrantState>(g.state));
  if (!g.last_error.empty()) ErrorToProto(g.last_error, out->mutable_last_error());
  for (const auto& [k, v] : g.labels) (*out->mutable_labels())[k] = v;
  if (IsSet(g.create_time)) *out->mutable_create_time() = ToTimestamp(g.create_time);
  if (IsSet(g.consent_time)) *out->mutable_consent_time() = ToTimestamp(g.consent_time);
  if (IsSet(g.refresh_token_last_used_time)) *out->mutable_refresh_token_last_used_time() = ToTimestamp(g.refresh_token_last_used_time);
  if (IsSet(g.last_refresh_time)) *out->mutable_last_refresh_time() = ToTimestamp(g.last_refresh_time);
  out->set_source(g.source == RecordSource::kConfig ? "config" : "api");
}

absl::StatusOr<Grant> GrantFromProto(const v1::Grant& in) {
  Grant g;
  g.id = in.id();
  g.app = in.app();
  g.mailbox = in.mailbox();
  switch (in.kind()) {
    case v1::GRANT_KIND_APP_ONLY:
      g.kind = GrantKind::kAppOnly;
      break;
    case v1::GRANT_KIND_SERVICE_ACCOUNT:
      g.kind = GrantKind::kServiceAccount;
      break;
    case v1::GRANT_KIND_DELEGATED:
      g.kind = GrantKind::kDelegated;
      break;
    default:
      g.kind = GrantKind::kDelegated;
      break;
  }
  g.subject = in.subject();
  g.scopes.assign(in.scopes().begin(), in.scopes().end());
  for (const auto& [k, v] : in.labels()) g.labels[k] = v;
  return g;
}

void AuditEventToProto(const AuditEvent& e, v1::AuditEvent* out) {
  out->set_id(absl::StrCat(e.id));
  *out->mutable_time() = ToTimestamp(e.time);
  out->set_caller(e.caller);
  out->set_action(e.action);
  out->set_method(e.method);
  out->set_app(e.app);
  out->set_grant(e.grant);
  out->set_result(e.result);
  out->set_detail(e.detail);
  out->set_request_id(e.request_id);
}

}  // namespace tokenbroker
