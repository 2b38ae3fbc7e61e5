#include "service/consent/consent_manager.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/json.h"
#include "service/common/status_macros.h"
#include "service/crypto/jwt.h"
#include "service/crypto/random.h"
#include "service/tokens/app_credentials.h"

namespace tokenbroker {
namespace {

constexpr size_t kMaxCodeBytes = 16 * 1024;
constexpr char kCodeFlow[] = "authorization_code";
constexpr char kDeviceFlow[] = "device_code";

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool HasControlCharacters(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// The status a consent call returns for a provider failure.
absl::Status ConsentError(const ProviderFailure& failure, absl::string_view what) {
  switch (failure.kind) {
    case FailureKind::kTransient:
    case FailureKind::kThrottled:
      return absl::UnavailableError(absl::StrCat(failure.message, "; retry"));
    case FailureKind::kNeedsReconsent:
      return absl::FailedPreconditionError(absl::StrCat("the identity provider refused the ", what, ": ",
                                                        failure.message));
    case FailureKind::kInvalidClient:
      return absl::FailedPreconditionError(absl::StrCat(
          "every credential of the app was rejected (last: ", failure.message,
          "); add a working one with `tokenbrokerctl app add-credential`"));
    case FailureKind::kAppConfiguration:
      break;
  }
  return absl::FailedPreconditionError(failure.message);
}

// The store key of an authorization state: its SHA-256 in hex (the state
// itself is a bearer secret and is never stored).
std::string SharedAuthorizationKey(absl::string_view state) {
  return absl::StrCat("auth:", absl::BytesToHexString(Sha256(state)));
}

// What another replica needs to go on with a consent, as JSON: the grant spec,
// and the flow's secrets. Sealed before it is stored.
Secret EncodeConsent(const Grant& spec, absl::string_view redirect_uri, const Secret* verifier,
                     const Secret* device_code, absl::Duration interval, absl::Time expire_time) {
  std::string json = absl::StrCat("{\"id\":", JsonQuote(spec.id), ",\"app\":", JsonQuote(spec.app),
                                  ",\"mailbox\":", JsonQuote(spec.mailbox), ",\"subject\":", JsonQuote(spec.subject),
                                  ",\"scopes\":[");
  for (size_t i = 0; i < spec.scopes.size(); ++i) absl::StrAppend(&json, i ? "," : "", JsonQuote(spec.scopes[i]));
  json += "],\"labels\":{";
  bool first = true;
  for (const auto& [k, v] : spec.labels) {
    absl::StrAppend(&json, first ? "" : ",", JsonQuote(k), ":", JsonQuote(v));
    first = false;
  }
  absl::StrAppend(&json, "},\"redirect_uri\":", JsonQuote(redirect_uri), ",\"interval_ms\":",
                  absl::ToInt64Milliseconds(interval), ",\"expire_us\":", absl::ToUnixMicros(expire_time));
  if (verifier != nullptr) absl::StrAppend(&json, ",\"verifier\":", JsonQuote(verifier->Reveal()));
  if (device_code != nullptr) absl::StrAppend(&json, ",\"device_code\":", JsonQuote(device_code->Reveal()));
  json += "}";
  return Secret(std::move(json));
}

struct DecodedConsent {
  Grant spec;
  std::string redirect_uri;
  Secret verifier;
  Secret device_code;
  absl::Duration interval;
  absl::Time expire_time;
};

absl::StatusOr<DecodedConsent> DecodeConsent(const Secret& payload) {
  ASSIGN_OR_RETURN(google::protobuf::Struct json, ParseJsonObject(payload.Reveal(), "pending consent"));
  DecodedConsent d;
  d.spec.kind = GrantKind::kDelegated;
  d.spec.id = JsonString(json, "id");
  d.spec.app = JsonString(json, "app");
  d.spec.mailbox = JsonString(json, "mailbox");
  d.spec.subject = JsonString(json, "subject");
  if (const google::protobuf::Value* scopes = JsonField(json, "scopes")) {
    for (const auto& v : scopes->list_value().values()) d.spec.scopes.push_back(v.string_value());
  }
  if (const google::protobuf::Value* labels = JsonField(json, "labels")) {
    for (const auto& [k, v] : labels->struct_value().fields()) d.spec.labels[k] = v.string_value();
  }
  d.redirect_uri = JsonString(json, "redirect_uri");
  double number = 0;
  if (JsonSeconds(json, "interval_ms", &number)) d.interval = absl::Milliseconds(number);
  if (JsonSeconds(json, "expire_us", &number)) d.expire_time = absl::FromUnixMicros(JsonInteger(number));
  for (auto& [name, value] : *json.mutable_fields()) {
    if (name != "verifier" && name != "device_code") continue;
    std::string* text = value.mutable_string_value();
    (name == "verifier" ? d.verifier : d.device_code) = Secret::CopyFrom(*text);
    WipeString(*text);
  }
  if (d.spec.id.empty() || d.spec.app.empty()) return absl::DataLossError("a pending consent in the store is incomplete");
  return d;
}

}  // namespace

absl::Status ValidateRedirectUri(absl::string_view uri) {
  if (uri.empty()) return Invalid("redirect_uri", "required");
  if (uri.size() > 2048 || HasControlCharacters(uri) || absl::StrContains(uri, " ")) {
    return Invalid("redirect_uri", "must be a URL of at most 2048 characters without spaces or control characters");
  }
  if (absl::StrContains(uri, "#")) return Invalid("redirect_uri", "must not have a fragment (#...)");
  absl::string_view rest = uri;
  const bool https = absl::ConsumePrefix(&rest, "https://");
  if (!https && !absl::ConsumePrefix(&rest, "http://")) {
    return Invalid("redirect_uri", "must be an https:// URL, or http:// on a loopback address");
  }
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  if (authority.empty() || absl::StrContains(authority, "@")) {
    return Invalid("redirect_uri", "must name a host (and no user information)");
  }
  if (!https) {
    absl::string_view host = authority;
    if (absl::StartsWith(host, "[")) {
      host = host.substr(0, host.find(']') + 1);
    } else {
      host = host.substr(0, host.find(':'));
    }
    if (host != "127.0.0.1" && host != "[::1]" && !absl::EqualsIgnoreCase(host, "localhost")) {
      return Invalid("redirect_uri", "http:// is allowed only on a loopback address (127.0.0.1, [::1], localhost)");
    }
  }
  return absl::OkStatus();
}

ConsentManager::ConsentManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock,
                               Logger& logger, ConsentOptions options)
    : vault_(vault),
      providers_(std::move(providers)),
      clock_(clock),
      logger_(logger),
      options_(options) {}

absl::StatusOr<IdentityProvider*> ConsentManager::ProviderFor(const App& app) {
  auto it = providers_.find(app.provider);
  if (it == providers_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("app \"", app.id, "\": consent with ", ProviderName(app.provider),
                                                      " is not available in this version of tokenbrokerd"));
  }
  return it->second;
}

absl::StatusOr<AuthorizationStart> ConsentManager::BeginAuthorization(Grant spec, const std::string& redirect_uri,
                                                                      const std::string& login_hint,
                                                                      const std::string& prompt,
                                                                      const std::string& caller) {
  RETURN_IF_ERROR(ValidateRedirectUri(redirect_uri));
  if (!prompt.empty() && prompt != "login" && prompt != "consent" && prompt != "select_account" && prompt != "none") {
    return Invalid("prompt", "expected login, consent, select_account or none");
  }
  if (login_hint.size() > 320 || HasControlCharacters(login_hint)) {
    return Invalid("login_hint", "must be at most 320 characters without control characters");
  }
  ASSIGN_OR_RETURN(App app, vault_.PrepareDelegatedGrant(spec));
  ASSIGN_OR_RETURN(IdentityProvider * provider, ProviderFor(app));
  const absl::Time now = clock_.Now();
  PendingAuthorization pending{spec, redirect_uri, Secret(RandomBase64Url(32)), now + options_.authorization_ttl,
                               caller};
  AuthorizationUrlRequest url_request;
  url_request.redirect_uri = redirect_uri;
  url_request.state = RandomBase64Url(32);
  url_request.code_challenge = Base64Url(Sha256(pending.code_verifier.Reveal()));
  url_request.login_hint = login_hint;
  url_request.prompt = prompt;
  ASSIGN_OR_RETURN(std::string url, provider->AuthorizationUrl(app, spec, url_request));
  if (options_.shared) {
    const std::string key = SharedAuthorizationKey(url_request.state);
    ASSIGN_OR_RETURN(std::string sealed,
                     vault_.SealConsent(key, EncodeConsent(spec, redirect_uri, &pending.code_verifier, nullptr,
                                                           absl::ZeroDuration(), pending.expire_time)));
    RETURN_IF_ERROR(vault_.store().PutPendingConsent(
        {key, spec.id, caller, std::move(sealed), pending.expire_time, absl::InfiniteFuture()}));
  } else {
    absl::MutexLock lock(&mu_);
    for (auto it = authorizations_.begin(); it != authorizations_.end();) {
      it = it->second.expire_time <= now ? authorizations_.erase(it) : std::next(it);
    }
    if (authorizations_.size() >= options_.max_pending) {
      return absl::ResourceExhaustedError(
          absl::StrCat(authorizations_.size(), " authorizations are already waiting; complete them or wait ",
                       absl::FormatDuration(options_.authorization_ttl), " for them to expire"));
    }
    authorizations_.emplace(Sha256(url_request.state), std::move(pending));
  }
  logger_.Info("authorization started", {{"grant", spec.id}, {"app", app.id}});
  Observe(kCodeFlow, "started");
  return AuthorizationStart{std::move(url), url_request.state, now + options_.authorization_ttl};
}

namespace {

absl::Status UnknownState() {
  return absl::InvalidArgumentError(
      "state: unknown or already used (states are single-use; with SQLite they do not survive a restart); start "
      "again with `tokenbrokerctl consent begin`");
}

}  // namespace

absl::StatusOr<std::string> ConsentManager::PendingGrant(absl::string_view state) {
  if (options_.shared) {
    ASSIGN_OR_RETURN(std::optional<PendingConsent> pending,
                     vault_.store().GetPendingConsent(SharedAuthorizationKey(state)));
    if (!pending.has_value()) return UnknownState();
    return pending->grant;
  }
  absl::MutexLock lock(&mu_);
  auto it = authorizations_.find(Sha256(state));
  if (it == authorizations_.end()) return UnknownState();
  return it->second.spec.id;
}

absl::StatusOr<Grant> ConsentManager::CompleteAuthorization(absl::string_view state, Secret code,
                                                            absl::string_view caller) {
  if (state.empty()) return Invalid("state", "required");
  if (code.empty()) return Invalid("code", "required");
  if (code.size() > kMaxCodeBytes) return Invalid("code", "larger than 16 KiB");
  std::optional<PendingAuthorization> pending;
  if (options_.shared) {
    ASSIGN_OR_RETURN(pending, TakeSharedAuthorization(state, caller));
  } else {
    absl::MutexLock lock(&mu_);
    auto it = authorizations_.find(Sha256(state));
    if (it != authorizations_.end()) {
      if (it->second.caller != caller) {
        return absl::PermissionDeniedError(
            "state: this authorization was begun by another caller; only that caller can complete it");
      }
      pending.emplace(std::move(it->second));
      authorizations_.erase(it);  // single use, whatever happens next
    }
  }
  if (!pending.has_value()) return UnknownState();
  if (clock_.Now() >= pending->expire_time) {
    return absl::FailedPreconditionError(absl::StrCat("state: expired at ", absl::FormatTime(pending->expire_time),
                                                      "; start again with `tokenbrokerctl consent begin`"));
  }
  ASSIGN_OR_RETURN(App app, vault_.GetApp(pending->spec.app));
  ASSIGN_OR_RETURN(IdentityProvider * provider, ProviderFor(app));
  AuthorizationCode authorization{std::move(code), pending->redirect_uri, std::move(pending->code_verifier)};
  std::optional<IssuedToken> issued;
  ASSIGN_OR_RETURN(
      std::optional<ProviderFailure> failed,
      TryAppCredentials(vault_, clock_, logger_, app,
                        [&](const AppCredential& credential, const Secret& secret) -> std::optional<ProviderFailure> {
                          TokenRequest request{&app, &pending->spec, &credential, &secret, nullptr, &authorization,
                                               nullptr};
                          TokenReply reply = provider->RequestToken(request);
                          if (!reply.ok()) return reply.failure;
                          issued = std::move(reply.token);
                          return std::nullopt;
                        }));
  if (failed.has_value()) {
    logger_.Warn("authorization code not redeemed", {{"grant", pending->spec.id}, {"error", failed->message}});
    Observe(kCodeFlow, "failed");
    return ConsentError(*failed,
                        "authorization code (expired, already used, or issued for another redirect URI or PKCE "
                        "verifier; start again)");
  }
  absl::StatusOr<Grant> grant = Consented(pending->spec, issued);
  Observe(kCodeFlow, grant.ok() ? "completed" : "failed");
  return grant;
}

absl::StatusOr<ConsentManager::PendingAuthorization> ConsentManager::TakeSharedAuthorization(
    absl::string_view state, absl::string_view caller) {
  const std::string key = SharedAuthorizationKey(state);
  ASSIGN_OR_RETURN(std::optional<PendingConsent> seen, vault_.store().GetPendingConsent(key));
  if (!seen.has_value()) return UnknownState();
  if (seen->caller != caller) {
    return absl::PermissionDeniedError(
        "state: this authorization was begun by another caller; only that caller can complete it");
  }
  // Single use across every replica, whatever happens next.
  ASSIGN_OR_RETURN(std::optional<PendingConsent> taken, vault_.store().TakePendingConsent(key));
  if (!taken.has_value()) return UnknownState();
  ASSIGN_OR_RETURN(Secret payload, vault_.OpenConsent(*taken));
  ASSIGN_OR_RETURN(DecodedConsent d, DecodeConsent(payload));
  return PendingAuthorization{std::move(d.spec), std::move(d.redirect_uri), std::move(d.verifier),
                              taken->expire_time, taken->caller};
}

absl::StatusOr<Grant> ConsentManager::Consented(const Grant& spec, const std::optional<IssuedToken>& issued) {
  if (!issued.has_value() || issued->refresh_token.empty()) {
    return absl::FailedPreconditionError(
        "the identity provider returned no refresh token: the grant's scopes must include offline_access (and "
        "the provider must allow this app refresh tokens)");
  }
  // The vault tells the token cache, the mail pool and the authorizer.
  ASSIGN_OR_RETURN(Grant grant, vault_.ImportGrant(spec, issued->refresh_token, /*replace=*/true));
  logger_.Info("consent completed", {{"grant", grant.id}, {"app", grant.app}, {"mailbox", grant.mailbox}});
  return grant;
}

absl::StatusOr<DeviceFlowStart> ConsentManager::StartDeviceAuthorization(Grant spec) {
  ASSIGN_OR_RETURN(App app, vault_.PrepareDelegatedGrant(spec));
  ASSIGN_OR_RETURN(IdentityProvider * provider, ProviderFor(app));
  {
    absl::MutexLock lock(&mu_);
    if (device_flows_.size() >= options_.max_pending && device_flows_.count(spec.id) == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(device_flows_.size(), " device authorizations are waiting"));
    }
  }
  std::optional<DeviceAuthorization> started;
  ASSIGN_OR_RETURN(
      std::optional<ProviderFailure> failed,
      TryAppCredentials(vault_, clock_, logger_, app,
                        [&](const AppCredential& credential, const Secret& secret) -> std::optional<ProviderFailure> {
                          TokenRequest request{&app, &spec, &credential, &secret};
                          DeviceAuthorizationReply reply = provider->StartDeviceAuthorization(request);
                          if (!reply.ok()) return reply.failure;
                          started = std::move(reply.authorization);
                          return std::nullopt;
                        }));
  if (failed.has_value()) return ConsentError(*failed, "device authorization");
  RETURN_IF_ERROR(vault_.MarkConsentPending(spec).status());
  DeviceFlowStart result{started->user_code, started->verification_uri, started->message, started->expire_time,
                         started->interval, spec.id};
  if (options_.shared) {
    // A new flow for the same grant replaces an older one.
    const std::string key = absl::StrCat("device:", spec.id);
    ASSIGN_OR_RETURN(std::string sealed,
                     vault_.SealConsent(key, EncodeConsent(spec, "", nullptr, &started->device_code,
                                                           started->interval, started->expire_time)));
    RETURN_IF_ERROR(vault_.store().PutPendingConsent(
        {key, spec.id, "", std::move(sealed), started->expire_time, clock_.Now() + started->interval}));
    poller_.Wake();
  } else {
    absl::MutexLock lock(&mu_);
    DeviceFlow& flow = device_flows_[spec.id];  // a new flow replaces an older one for the same grant
    flow.spec = spec;
    flow.device_code = std::move(started->device_code);
    flow.expire_time = started->expire_time;
    flow.interval = started->interval;
    flow.next_poll = clock_.Now() + started->interval;
    flow.polling = false;
    flow.serial = ++next_serial_;
    poller_.Wake();
  }
  logger_.Info("device authorization started", {{"grant", spec.id}, {"app", app.id}});
  Observe(kDeviceFlow, "started");
  return result;
}

size_t ConsentManager::PendingDeviceFlows() {
  absl::MutexLock lock(&mu_);
  return device_flows_.size();
}

int ConsentManager::PollSharedDeviceFlows() {
  const absl::Time now = clock_.Now();
  // Claimed for a minute: a replica that dies mid-poll hands the flow on then.
  absl::StatusOr<std::vector<PendingConsent>> claimed = vault_.store().ClaimDueDeviceConsents(now, absl::Minutes(1));
  if (!claimed.ok()) {
    logger_.Warn("device authorizations could not be read from the store", {{"error", claimed.status()}});
    return 0;
  }
  for (const PendingConsent& c : *claimed) {
    absl::StatusOr<Secret> payload = vault_.OpenConsent(c);
    absl::StatusOr<DecodedConsent> d = payload.ok() ? DecodeConsent(*payload) : payload.status();
    PendingConsent next = c;
    next.sealed.clear();  // done unless it goes on waiting
    if (!d.ok()) {
      logger_.Warn("a device authorization in the store cannot be read; dropped",
                   {{"grant", c.grant}, {"error", d.status()}});
    } else {
      DeviceFlow flow{d->spec, std::move(d->device_code), d->expire_time, d->interval, now, true, 0};
      if (PollOne(c.grant, flow) == PollOutcome::kWaiting) {
        absl::StatusOr<std::string> sealed = vault_.SealConsent(
            c.key, EncodeConsent(flow.spec, "", nullptr, &flow.device_code, flow.interval, flow.expire_time));
        if (sealed.ok()) {
          next.sealed = *std::move(sealed);
          next.next_poll = flow.next_poll;
        }
      }
    }
    // Unless a new flow for the grant replaced this one meanwhile.
    (void)vault_.store().ReplacePendingConsent(next, c.sealed);
  }
  return static_cast<int>(claimed->size());
}

int ConsentManager::PollDeviceFlows() {
  if (options_.shared) return PollSharedDeviceFlows();
  struct Due {
    std::string grant_id;
    uint64_t serial;
    DeviceFlow flow;
  };
  std::vector<Due> due;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    for (auto& [id, flow] : device_flows_) {
      if (flow.polling || flow.next_poll > now) continue;
      flow.polling = true;
      due.push_back(Due{id, flow.serial,
                        DeviceFlow{flow.spec, flow.device_code.Clone(), flow.expire_time, flow.interval,
                                   flow.next_poll, true, flow.serial}});
    }
  }
  for (Due& d : due) {
    const PollOutcome outcome = PollOne(d.grant_id, d.flow);
    absl::MutexLock lock(&mu_);
    auto it = device_flows_.find(d.grant_id);
    if (it == device_flows_.end() || it->second.serial != d.serial) continue;  // replaced meanwhile
    if (outcome == PollOutcome::kDone) {
      device_flows_.erase(it);
    } else {
      it->second.polling = false;
      it->second.interval = d.flow.interval;
      it->second.next_poll = d.flow.next_poll;
    }
  }
  return static_cast<int>(due.size());
}

void ConsentManager::FailDeviceFlow(const Grant& spec, const std::string& oauth_error, int64_t code,
                                    const std::string& message) {
  absl::Status recorded = vault_.RecordConsentFailure(spec.id, {oauth_error, code, message, clock_.Now()});
  logger_.Warn("device authorization ended without consent",
               {{"grant", spec.id}, {"error", message}, {"recorded", recorded}});
  Observe(kDeviceFlow, "failed");
}

ConsentManager::PollOutcome ConsentManager::PollOne(const std::string& grant_id, DeviceFlow& flow) {
  const absl::Time now = clock_.Now();
  if (now >= flow.expire_time) {
    FailDeviceFlow(flow.spec, "expired_token", 0,
                   "the device code expired before anyone signed in; start again with `tokenbrokerctl consent device`");
    return PollOutcome::kDone;
  }
  absl::StatusOr<App> app = vault_.GetApp(flow.spec.app);
  if (absl::IsNotFound(app.status())) {
    FailDeviceFlow(flow.spec, "app_deleted", 0, "the grant's app was deleted during the device authorization");
    return PollOutcome::kDone;
  }
  absl::StatusOr<IdentityProvider*> provider = app.ok() ? ProviderFor(*app) : app.status();
  std::optional<IssuedToken> issued;
  absl::StatusOr<std::optional<ProviderFailure>> failed =
      provider.ok() ? absl::InternalError("not polled") : provider.status();
  if (provider.ok()) {
    failed = TryAppCredentials(
        vault_, clock_, logger_, *app,
        [&](const AppCredential& credential, const Secret& secret) -> std::optional<ProviderFailure> {
          TokenRequest request{&*app, &flow.spec, &credential, &secret, nullptr, nullptr, &flow.device_code};
          TokenReply reply = (*provider)->RequestToken(request);
          if (!reply.ok()) return reply.failure;
          issued = std::move(reply.token);
          return std::nullopt;
        });
  }
  if (!failed.ok()) {
    // The store or vault failed, not the user: try again at the next interval.
    logger_.Warn("device authorization poll failed", {{"grant", grant_id}, {"error", failed.status()}});
    flow.next_poll = now + flow.interval;
    return PollOutcome::kWaiting;
  }
  if (!failed->has_value()) {
    absl::StatusOr<Grant> grant = Consented(flow.spec, issued);
    if (grant.ok()) Observe(kDeviceFlow, "completed");
    if (!grant.ok()) FailDeviceFlow(flow.spec, "consent", 0, std::string(grant.status().message()));
    return PollOutcome::kDone;
  }
  const ProviderFailure& failure = **failed;
  const std::string& error = failure.oauth_error;
  if (error == "authorization_pending") {
    flow.next_poll = now + flow.interval;
    return PollOutcome::kWaiting;
  }
  if (error == "slow_down") {
    flow.interval += absl::Seconds(5);  // RFC 8628 section 3.5
    flow.next_poll = now + flow.interval;
    return PollOutcome::kWaiting;
  }
  if (failure.kind == FailureKind::kTransient || failure.kind == FailureKind::kThrottled) {
    flow.next_poll = now + std::max(flow.interval, failure.retry_after);
    return PollOutcome::kWaiting;
  }
  if (error == "authorization_declined" || error == "access_denied") {
    FailDeviceFlow(flow.spec, error, failure.provider_code,
                   "the user declined the sign-in; start again with `tokenbrokerctl consent device`");
  } else if (error == "expired_token") {
    FailDeviceFlow(flow.spec, error, failure.provider_code,
                   "the device code expired before anyone signed in; start again with `tokenbrokerctl consent device`");
  } else if (error == "bad_verification_code") {
    FailDeviceFlow(flow.spec, error, failure.provider_code,
                   "the identity provider does not know the device code; start again with `tokenbrokerctl consent "
                   "device`");
  } else {
    FailDeviceFlow(flow.spec, error, failure.provider_code, failure.message);
  }
  return PollOutcome::kDone;
}

absl::Time ConsentManager::NextPollLocked() {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, flow] : device_flows_) {
    if (!flow.polling) next = std::min(next, flow.next_poll);
  }
  return next;
}

void ConsentManager::Start() {
  poller_.Start();
}

void ConsentManager::Stop() { poller_.Stop(); }

absl::Duration ConsentManager::NextPollWait() {
  // Shared flows live in the store: look every second.
  if (options_.shared) return absl::Seconds(1);
  absl::MutexLock lock(&mu_);
  return std::clamp(NextPollLocked() - clock_.Now(), absl::ZeroDuration(), absl::Hours(1));
}

}  // namespace tokenbroker
