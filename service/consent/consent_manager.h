// ConsentManager: the two ways a user (or an admin, for a shared mailbox)
// gives the broker a delegated grant.
//
// Authorization code with PKCE (RFC 6749 4.1, RFC 7636 S256):
// BeginAuthorization returns the provider URL to open and an opaque state
// (256 random bits) that is single-use and expires (default 10 minutes);
// CompleteAuthorization takes the state and the code the provider sent to the
// redirect URI, redeems the code with the app's credentials and the PKCE
// verifier, and stores the refresh token (creating or re-consenting the grant).
// Pending states live in this process, or with ConsentOptions::shared (several
// replicas on one store) sealed in the store, where any replica completes
// them and each is used once across all replicas.
//
// Device code (RFC 8628): StartDeviceAuthorization returns the user code and
// URL; the broker then polls the token endpoint in the background at the
// provider's interval (slow_down adds 5 s), until the user signs in (the grant
// becomes active), declines, or the code expires (the grant shows the reason
// in last_error). The grant is pending_consent meanwhile. With `shared`, the
// flow lives in the store and each poll is claimed by one replica, so the
// provider is polled once per interval whatever the replica count, and a
// replica that dies does not end the flow.
//
// Thread-safe. Time comes from the injected clock; PollDeviceFlows() is one
// pass, so tests drive it with a fake clock, and Start() runs it on a thread.
#ifndef TOKENBROKER_SERVICE_CONSENT_CONSENT_MANAGER_H_
#define TOKENBROKER_SERVICE_CONSENT_CONSENT_MANAGER_H_

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/periodic_task.h"
#include "service/idp/provider.h"
#include "service/logging/logger.h"
#include "service/vault/vault.h"

namespace tokenbroker {

struct ConsentOptions {
  // How long an authorization state can be redeemed.
  absl::Duration authorization_ttl = absl::Minutes(10);
  // Pending authorizations and device flows, each; beyond this new ones get
  // RESOURCE_EXHAUSTED.
  size_t max_pending = 1000;
  // Called with the flow ("authorization_code", "device_code") and "started",
  // "completed" or "failed", for metrics.
  std::function<void(absl::string_view flow, absl::string_view result)> on_consent;
  // Keep pending consents in the store (several replicas), not in memory.
  bool shared = false;
};

struct AuthorizationStart {
  std::string authorization_url;
  std::string state;
  absl::Time expire_time;
};

struct DeviceFlowStart {
  std::string user_code;
  std::string verification_uri;
  std::string message;
  absl::Time expire_time;
  absl::Duration interval;
  std::string grant;
};

class ConsentManager {
 public:
  ConsentManager(Vault& vault, std::map<Provider, IdentityProvider*> providers, const Clock& clock, Logger& logger,
                 ConsentOptions options = {});
  ~ConsentManager() { Stop(); }

  // `spec`: id, app, mailbox, optional scopes and labels. INVALID_ARGUMENT
  // names the field (redirect_uri must be https, or http on a loopback host).
  // `caller`: the identity that begins; only the same identity can complete.
  absl::StatusOr<AuthorizationStart> BeginAuthorization(Grant spec, const std::string& redirect_uri,
                                                        const std::string& login_hint, const std::string& prompt,
                                                        const std::string& caller = "");
  // The state is used up by this call whatever its outcome. FAILED_PRECONDITION
  // when the provider refuses the code (expired, used, PKCE or redirect_uri
  // mismatch) or returns no refresh token; UNAVAILABLE for an outage.
  // PERMISSION_DENIED (and the state stays usable) when `caller` is not the
  // identity that began it.
  absl::StatusOr<Grant> CompleteAuthorization(absl::string_view state, Secret code, absl::string_view caller = "");
  // The grant a pending state is for (to check the caller's policy before
  // completing); INVALID_ARGUMENT when the state is unknown.
  absl::StatusOr<std::string> PendingGrant(absl::string_view state);

  absl::StatusOr<DeviceFlowStart> StartDeviceAuthorization(Grant spec);
  // Polls every device flow whose interval has passed; returns how many.
  int PollDeviceFlows();
  // Device flows still waiting for the user (in this process; 0 with
  // `shared`, where they are in the store).
  size_t PendingDeviceFlows();

  void Start();
  void Stop();

 private:
  struct PendingAuthorization {
    Grant spec;
    std::string redirect_uri;
    Secret code_verifier;
    absl::Time expire_time;
    std::string caller;
  };
  struct DeviceFlow {
    Grant spec;
    Secret device_code;
    absl::Time expire_time;
    absl::Duration interval;
    absl::Time next_poll;
    bool polling = false;
    // Bumped when a new flow for the same grant replaces this one.
    uint64_t serial = 0;
  };
  enum class PollOutcome { kWaiting, kDone };

  absl::StatusOr<IdentityProvider*> ProviderFor(const App& app);
  // With `shared`: the authorization of `state` taken from the store (once).
  absl::StatusOr<PendingAuthorization> TakeSharedAuthorization(absl::string_view state, absl::string_view caller);
  // With `shared`: polls the device flows due in the store that this replica
  // claims.
  int PollSharedDeviceFlows();
  // The grant after a successful redemption: refresh token stored, cache reset.
  absl::StatusOr<Grant> Consented(const Grant& spec, const std::optional<IssuedToken>& issued);
  // One poll of one flow (no lock held).
  PollOutcome PollOne(const std::string& grant_id, DeviceFlow& flow);
  void FailDeviceFlow(const Grant& spec, const std::string& oauth_error, int64_t code, const std::string& message);
  absl::Time NextPollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Observe(absl::string_view flow, absl::string_view result) {
    if (options_.on_consent) options_.on_consent(flow, result);
  }

  Vault& vault_;
  std::map<Provider, IdentityProvider*> providers_;
  const Clock& clock_;
  Logger& logger_;
  const ConsentOptions options_;

  absl::Mutex mu_;
  // Keyed by SHA-256 of the state, so that the lookup does not compare the
  // state itself.
  std::map<std::string, PendingAuthorization> authorizations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DeviceFlow> device_flows_ ABSL_GUARDED_BY(mu_);  // by grant id
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 0;
  // Polls due device flows; woken when one starts. Declared last: stopped
  // first.
  absl::Duration NextPollWait();
  PeriodicTask poller_{[this] { return NextPollWait(); }, [this] { PollDeviceFlows(); }};
};

// INVALID_ARGUMENT naming `redirect_uri` unless it is an absolute https URL,
// or http on 127.0.0.1, [::1] or localhost, without a fragment.
absl::Status ValidateRedirectUri(absl::string_view uri);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CONSENT_CONSENT_MANAGER_H_
