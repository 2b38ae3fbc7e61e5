// MailPool: authenticated IMAP connections per grant, so that MailService
// calls reuse a logged-in session instead of paying TLS and SASL each time.
//
// At most `max_per_mailbox` connections per grant (Exchange Online allows
// some 16-20 per mailbox); a call that finds them all busy waits up to
// `acquire_timeout`, then gets RESOURCE_EXHAUSTED. Before reuse a connection
// idle for more than `check_after_idle` is checked with NOOP; a connection
// whose access token is about to expire is logged out and replaced; a
// connection that failed is dropped. The grant (enabled?) and its app's IMAP
// server are read from the store at most every 5 seconds per grant, and at
// once after Forget(). If the server refuses the token, the
// token is refreshed once (forced) and the login tried once more. Idle
// connections are logged out after `idle_timeout` (SweepIdle, run by Start()'s
// thread) and all of them at Shutdown().
//
// Thread-safe. Blocking: run it off latency-critical threads.
#ifndef TOKENBROKER_SERVICE_MAIL_MAIL_POOL_H_
#define TOKENBROKER_SERVICE_MAIL_MAIL_POOL_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/common/periodic_task.h"
#include "service/common/clock.h"
#include "service/imap/imap_session.h"
#include "service/logging/logger.h"
#include "service/tokens/token_manager.h"
#include "service/vault/vault.h"

namespace tokenbroker {

struct MailPoolOptions {
  size_t max_per_mailbox = 4;
  absl::Duration idle_timeout = absl::Minutes(5);
  absl::Duration check_after_idle = absl::Seconds(30);
  absl::Duration acquire_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration io_timeout = absl::Seconds(60);
  std::string ca_file;
  SaslMechanism mechanism = SaslMechanism::kXoauth2;
  // Operation ("list", "status", "search", "fetch", "login"), result (a status
  // code name) and latency, for metrics.
  std::function<void(absl::string_view operation, absl::string_view result, absl::Duration latency)> on_operation;
  // Why a login failed: "rejected" (token refused), "permission" (token
  // accepted, mailbox refused), "unavailable".
  std::function<void(absl::string_view kind)> on_auth_failure;
};

// Opens IMAP sessions; a seam for tests.
using ImapOpener = std::function<absl::StatusOr<std::unique_ptr<ImapSession>>(const ImapServer&)>;

// Where an app's mail lives: its override, or the provider's default
// (Microsoft outlook.office365.com:993, Google imap.gmail.com:993).
// FAILED_PRECONDITION for an OIDC app without an IMAP host.
absl::StatusOr<ImapServer> ImapServerFor(const App& app, const MailPoolOptions& options);

class MailPool {
 public:
  MailPool(TokenManager& tokens, Vault& vault, const Clock& clock, Logger& logger, MailPoolOptions options,
           ImapOpener opener = nullptr);
  ~MailPool();

  // Runs `work` on an authenticated session of `grant_id`'s mailbox; counts
  // it as `operation`. The session goes back to the pool unless it failed.
  // When a pooled session turns out dead (the server dropped it while idle)
  // and `can_retry` says nothing reached the caller yet, `work` runs once
  // more on a fresh connection.
  absl::Status Run(absl::string_view grant_id, absl::string_view operation,
                   const std::function<absl::Status(ImapSession&)>& work,
                   const std::function<bool()>& can_retry = [] { return true; });
  // The same for work that keeps the session long (a mailbox watch): `work`
  // also gets when the session's access token expires, so that it can give
  // the session back in time for a new login.
  using HeldWork = std::function<absl::Status(ImapSession&, absl::Time token_expiry)>;
  absl::Status Hold(absl::string_view grant_id, absl::string_view operation, const HeldWork& work,
                    const std::function<bool()>& can_retry);

  // Drops what the pool knows about a grant (its idle connections and where
  // its mail lives; connections in use are logged out when they come back):
  // the vault's grant-changed listener calls it when the grant is disabled,
  // deleted or re-consented, so that the change takes effect at once. "*":
  // every grant.
  void Forget(absl::string_view grant_id);

  // Logs out connections idle longer than idle_timeout; returns how many.
  int SweepIdle();
  void Start();
  // Logs out every idle connection and refuses new work.
  void Shutdown();

  struct Counts {
    int idle = 0;
    int in_use = 0;
  };
  Counts counts();

 private:
  struct Pooled {
    std::unique_ptr<ImapSession> session;
    absl::Time token_expiry;
    absl::Time last_used;
    bool reused = false;
    // GrantSessions::generation when it was acquired.
    uint64_t generation = 0;
  };
  struct GrantSessions {
    std::vector<Pooled> idle;
    size_t in_use = 0;
    // Bumped by Forget: a session of an older generation (in use while the
    // grant changed, perhaps logged in to another mailbox) is logged out when
    // it comes back instead of pooled.
    uint64_t generation = 0;
    // Where the grant's mail lives, read from the store at most every
    // kResolveEvery (the store read costs more than the IMAP command).
    std::optional<ImapServer> server;
    absl::Time resolved = absl::InfinitePast();
  };
  absl::StatusOr<ImapServer> Resolve(const std::string& grant_id);
  // `refused`: the token the server just refused (then no pooled session is
  // reused, and the token is refreshed unless another call already did);
  // `used` gets the token of a login the server refuses.
  absl::StatusOr<Pooled> Acquire(const std::string& grant_id, const ImapServer& server, const Secret* refused,
                                 Secret* used);
  absl::StatusOr<Pooled> Connect(const std::string& grant_id, const ImapServer& server, const Secret* refused,
                                 Secret* used);
  void Release(const std::string& grant_id, std::optional<Pooled> session);
  void Observe(absl::string_view operation, const absl::Status& status, absl::Time start);

  TokenManager& tokens_;
  Vault& vault_;
  const Clock& clock_;
  Logger& logger_;
  const MailPoolOptions options_;
  ImapOpener opener_;
  absl::Mutex mu_;
  std::map<std::string, GrantSessions> mailboxes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Logs out idle connections every idle_timeout / 4 (at least 1 s).
  std::unique_ptr<PeriodicTask> sweeper_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_MAIL_MAIL_POOL_H_
