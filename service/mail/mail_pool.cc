#include "service/mail/mail_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

// A connection is replaced when its token has less than this left.
constexpr absl::Duration kTokenMargin = absl::Minutes(1);
// How long a grant's resolved IMAP server is trusted without a store read.
constexpr absl::Duration kResolveEvery = absl::Seconds(5);

std::string CodeName(const absl::Status& s) { return absl::StatusCodeToString(s.code()); }

}  // namespace

absl::StatusOr<ImapServer> ImapServerFor(const App& app, const MailPoolOptions& options) {
  ImapServer server;
  server.starttls = app.imap_security == ImapSecurity::kStartTls;
  server.host = app.imap_host;
  if (server.host.empty()) {
    switch (app.provider) {
      case Provider::kMicrosoft:
        server.host = "outlook.office365.com";
        break;
      case Provider::kGoogle:
        server.host = "imap.gmail.com";
        break;
      case Provider::kOidc:
        return absl::FailedPreconditionError(absl::StrCat(
            "app \"", app.id, "\" has no IMAP server: set it with `tokenbrokerctl app create ... --imap-host`"));
    }
  }
  server.port = app.imap_port > 0 ? app.imap_port : (server.starttls ? 143 : 993);
  server.ca_file = options.ca_file;
  server.connect_timeout = options.connect_timeout;
  server.io_timeout = options.io_timeout;
  return server;
}

MailPool::MailPool(TokenManager& tokens, Vault& vault, const Clock& clock, Logger& logger, MailPoolOptions options,
                   ImapOpener opener)
    : tokens_(tokens),
      vault_(vault),
      clock_(clock),
      logger_(logger),
      options_(std::move(options)),
      opener_(opener ? std::move(opener) : ImapOpener(&ImapSession::Open)) {}

MailPool::~MailPool() { Shutdown(); }

void MailPool::Observe(absl::string_view operation, const absl::Status& status, absl::Time start) {
  if (options_.on_operation) options_.on_operation(operation, CodeName(status), clock_.Now() - start);
}

absl::StatusOr<MailPool::Pooled> MailPool::Connect(const std::string& grant_id, const ImapServer& server,
                                                    const Secret* refused, Secret* used) {
  const absl::Time start = clock_.Now();
  if (refused != nullptr) RETURN_IF_ERROR(tokens_.RefreshRefused(grant_id, *refused));
  ASSIGN_OR_RETURN(AccessToken token, tokens_.GetAccessToken(grant_id, kTokenMargin * 5));
  absl::StatusOr<std::unique_ptr<ImapSession>> session = opener_(server);
  absl::Status status = session.status();
  if (session.ok()) status = (*session)->Authenticate(token.mailbox, token.token, options_.mechanism);
  Observe("login", status, start);
  if (!status.ok()) {
    if (used != nullptr && absl::IsUnauthenticated(status)) *used = token.token.Copy();
    if (options_.on_auth_failure) {
      options_.on_auth_failure(absl::IsUnauthenticated(status)      ? "rejected"
                               : absl::IsPermissionDenied(status)   ? "permission"
                                                                    : "unavailable");
    }
    return status;
  }
  return Pooled{*std::move(session), token.expire_time, clock_.Now()};
}

absl::StatusOr<MailPool::Pooled> MailPool::Acquire(const std::string& grant_id, const ImapServer& server,
                                                    const Secret* refused, Secret* used) {
  const bool force_refresh = refused != nullptr;
  std::vector<Pooled> discard;
  std::optional<Pooled> reused;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("tokenbrokerd is shutting down");
    GrantSessions& box = mailboxes_[grant_id];
    auto ready = [&box, this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return stopping_ || !box.idle.empty() || box.in_use < options_.max_per_mailbox;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), options_.acquire_timeout)) {
      return absl::ResourceExhaustedError(absl::StrCat("all ", options_.max_per_mailbox,
                                                       " connections to the mailbox of grant \"", grant_id,
                                                       "\" are busy; retry with backoff"));
    }
    if (stopping_) return absl::UnavailableError("tokenbrokerd is shutting down");
    const absl::Time now = clock_.Now();
    while (!box.idle.empty() && !force_refresh) {
      Pooled candidate = std::move(box.idle.back());
      box.idle.pop_back();
      if (candidate.token_expiry - now < kTokenMargin || !candidate.session->usable()) {
        discard.push_back(std::move(candidate));
        continue;
      }
      reused = std::move(candidate);
      break;
    }
    if (force_refresh) {
      // Every pooled session logged in with the token that was just refused.
      for (Pooled& p : box.idle) discard.push_back(std::move(p));
      box.idle.clear();
    }
    ++box.in_use;
    generation = box.generation;
  }
  for (Pooled& p : discard) (void)p.session->Logout();
  if (reused.has_value() && clock_.Now() - reused->last_used > options_.check_after_idle) {
    // A cheap liveness check: the server may have dropped an idle connection.
    if (!reused->session->Noop().ok()) reused.reset();
  }
  if (reused.has_value()) {
    reused->reused = true;
    return *std::move(reused);
  }
  absl::StatusOr<Pooled> fresh = Connect(grant_id, server, refused, used);
  if (!fresh.ok()) {
    Release(grant_id, std::nullopt);
    return fresh;
  }
  fresh->generation = generation;
  return fresh;
}

void MailPool::Release(const std::string& grant_id, std::optional<Pooled> session) {
  std::optional<Pooled> logout;
  {
    absl::MutexLock lock(&mu_);
    GrantSessions& box = mailboxes_[grant_id];
    --box.in_use;
    if (session.has_value()) {
      if (session->session->usable() && !stopping_ && session->generation == box.generation) {
        session->last_used = clock_.Now();
        box.idle.push_back(*std::move(session));
      } else {
        logout = std::move(session);
      }
    }
  }
  if (logout.has_value() && logout->session->usable()) (void)logout->session->Logout();
}

absl::Status MailPool::Run(absl::string_view grant_id, absl::string_view operation,
                           const std::function<absl::Status(ImapSession&)>& work,
                           const std::function<bool()>& can_retry) {
  return Hold(grant_id, operation, [&work](ImapSession& session, absl::Time) { return work(session); }, can_retry);
}

absl::Status MailPool::Hold(absl::string_view grant_id, absl::string_view operation, const HeldWork& work,
                            const std::function<bool()>& can_retry) {
  const absl::Time start = clock_.Now();
  const std::string id(grant_id);
  absl::StatusOr<ImapServer> resolved = Resolve(id);
  if (!resolved.ok()) {
    Observe(operation, resolved.status(), start);
    return resolved.status();
  }
  const ImapServer server = *std::move(resolved);
  // The token the server refused, once it has: refreshed once (by this call
  // or by another that met the same token) and tried again.
  std::optional<Secret> refused;
  bool retried_dead = false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Secret used;
    absl::StatusOr<Pooled> pooled = Acquire(id, server, refused.has_value() ? &*refused : nullptr, &used);
    if (!pooled.ok()) {
      if (absl::IsUnauthenticated(pooled.status())) {
        if (!refused.has_value()) {
          logger_.Info("the mail server refused the grant's token; refreshing it once", {{"grant", id}});
          refused = std::move(used);
          continue;
        }
        absl::Status refused = absl::FailedPreconditionError(
            absl::StrCat("the mail server refused the access token of grant \"", id,
                         "\" even after a refresh (", pooled.status().message(),
                         "); check the app's IMAP permission and the grant's scopes and mailbox"));
        Observe(operation, refused, start);
        return refused;
      }
      Observe(operation, pooled.status(), start);
      return pooled.status();
    }
    absl::Status status = work(*pooled->session, pooled->token_expiry);
    const bool dead_pooled = pooled->reused && !pooled->session->usable() && absl::IsUnavailable(status);
    Release(id, *std::move(pooled));
    if (dead_pooled && !retried_dead && can_retry()) {
      logger_.Info("a pooled IMAP connection was dead; retrying on a new one", {{"grant", id}});
      retried_dead = true;
      continue;
    }
    Observe(operation, status, start);
    return status;
  }
  return absl::UnavailableError("the mail server could not be used; retry");
}

absl::StatusOr<ImapServer> MailPool::Resolve(const std::string& grant_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = mailboxes_.find(grant_id);
    if (it != mailboxes_.end() && it->second.server.has_value() && clock_.Now() - it->second.resolved < kResolveEvery) {
      return *it->second.server;
    }
  }
  ASSIGN_OR_RETURN(Grant grant, vault_.GetGrant(grant_id));
  if (grant.state == GrantState::kDisabled) {
    return absl::FailedPreconditionError(absl::StrCat("grant \"", grant_id, "\" is disabled; enable it with ",
                                                      "`tokenbrokerctl grant enable ", grant_id, "`"));
  }
  ASSIGN_OR_RETURN(App app, vault_.GetApp(grant.app));
  ASSIGN_OR_RETURN(ImapServer server, ImapServerFor(app, options_));
  absl::MutexLock lock(&mu_);
  GrantSessions& box = mailboxes_[grant_id];
  box.server = server;
  box.resolved = clock_.Now();
  return server;
}

void MailPool::Forget(absl::string_view grant_id) {
  if (grant_id == "*") {
    std::vector<std::string> all;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, box] : mailboxes_) all.push_back(id);
    }
    for (const std::string& id : all) Forget(id);
    return;
  }
  std::vector<Pooled> idle;
  {
    absl::MutexLock lock(&mu_);
    auto it = mailboxes_.find(std::string(grant_id));
    if (it == mailboxes_.end()) return;
    idle = std::move(it->second.idle);
    it->second.idle.clear();
    it->second.server.reset();
    ++it->second.generation;
  }
  for (Pooled& p : idle) (void)p.session->Logout();
}

int MailPool::SweepIdle() {
  std::vector<Pooled> expired;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    for (auto& [id, box] : mailboxes_) {
      auto keep = std::partition(box.idle.begin(), box.idle.end(), [&](const Pooled& p) {
        return now - p.last_used < options_.idle_timeout && p.token_expiry - now >= kTokenMargin;
      });
      for (auto it = keep; it != box.idle.end(); ++it) expired.push_back(std::move(*it));
      box.idle.erase(keep, box.idle.end());
    }
  }
  for (Pooled& p : expired) (void)p.session->Logout();
  return static_cast<int>(expired.size());
}

void MailPool::Start() {
  sweeper_ = std::make_unique<PeriodicTask>(std::max(absl::Seconds(1), options_.idle_timeout / 4),
                                            [this] { SweepIdle(); });
  sweeper_->Start();
}

void MailPool::Shutdown() {
  if (sweeper_ != nullptr) sweeper_->Stop();
  std::vector<Pooled> all;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [id, box] : mailboxes_) {
      for (Pooled& p : box.idle) all.push_back(std::move(p));
      box.idle.clear();
    }
  }
  for (Pooled& p : all) (void)p.session->Logout();
}

MailPool::Counts MailPool::counts() {
  absl::MutexLock lock(&mu_);
  Counts c;
  for (const auto& [id, box] : mailboxes_) {
    c.idle += static_cast<int>(box.idle.size());
    c.in_use += static_cast<int>(box.in_use);
  }
  return c;
}

}  // namespace tokenbroker
