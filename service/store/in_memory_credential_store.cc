#include "service/store/in_memory_credential_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
absl::Status InMemoryCredentialStore::CreateApp(const App& app) {
  absl::MutexLock lock(&mu_);
  App stored = app;
  stored.version = 1;
  if (!apps_.emplace(app.id, stored).second) {
    return absl::AlreadyExistsError(absl::StrCat("app \"", app.id, "\" already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<App> InMemoryCredentialStore::GetApp(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = apps_.find(id);
  if (it == apps_.end()) return RecordNotFound("app", id);
  return it->second;
}

absl::StatusOr<std::vector<App>> InMemoryCredentialStore::ListApps() {
  absl::MutexLock lock(&mu_);
  std::vector<App> out;
  for (const auto& [id, app] : apps_) out.push_back(app);
  return out;
}

absl::StatusOr<int64_t> InMemoryCredentialStore::UpdateApp(const App& app) {
  absl::MutexLock lock(&mu_);
  auto it = apps_.find(app.id);
  if (it == apps_.end()) return RecordNotFound("app", app.id);
  if (it->second.version != app.version) return RecordVersionMoved("app", app.id, app.version);
  it->second = app;
  it->second.version = app.version + 1;
  return it->second.version;
}

absl::Status InMemoryCredentialStore::DeleteApp(absl::string_view id, bool force) {
  absl::MutexLock lock(&mu_);
  if (apps_.find(id) == apps_.end()) return RecordNotFound("app", id);
  std::vector<std::string> users;
  for (const auto& [grant_id, grant] : grants_) {
    if (grant.app == id) users.push_back(grant_id);
  }
  if (!users.empty() && !force) {
    return absl::FailedPreconditionError(absl::StrCat("app \"", id, "\" is used by ", users.size(), " grant(s) (",
                                                      absl::StrJoin(users, ", "),
                                                      "); delete them first or delete with force"));
  }
  for (const std::string& grant_id : users) {
    grants_.erase(grant_id);
    leases_.erase(grant_id);
    access_tokens_.erase(grant_id);
  }
  apps_.erase(apps_.find(id));
  return absl::OkStatus();
}

absl::Status InMemoryCredentialStore::CreateGrant(const Grant& grant) {
  absl::MutexLock lock(&mu_);
  if (apps_.find(grant.app) == apps_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("grant.app: app \"", grant.app, "\" does not exist"));
  }
  Grant stored = grant;
  stored.version = 1;
  if (!grants_.emplace(grant.id, stored).second) {
    return absl::AlreadyExistsError(absl::StrCat("grant \"", grant.id, "\" already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Grant> InMemoryCredentialStore::GetGrant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = grants_.find(id);
  if (it == grants_.end()) return RecordNotFound("grant", id);
  return it->second;
}

absl::StatusOr<std::vector<Grant>> InMemoryCredentialStore::ListGrants(const GrantFilter& filter) {
  absl::MutexLock lock(&mu_);
  std::vector<Grant> out;
  for (auto it = grants_.upper_bound(filter.after_id); it != grants_.end(); ++it) {
    const Grant& grant = it->second;
    if (!filter.app.empty() && grant.app != filter.app) continue;
    if (filter.state.has_value() && grant.state != *filter.state) continue;
    out.push_back(grant);
    if (filter.limit > 0 && out.size() >= filter.limit) break;
  }
  return out;
}

absl::StatusOr<int64_t> InMemoryCredentialStore::UpdateGrant(const Grant& grant) {
  absl::MutexLock lock(&mu_);
  return UpdateGrantLocked(grant);
}

absl::StatusOr<int64_t> InMemoryCredentialStore::UpdateGrantLocked(const Grant& grant) {
  auto it = grants_.find(grant.id);
  if (it == grants_.end()) return RecordNotFound("grant", grant.id);
  if (it->second.version != grant.version) return RecordVersionMoved("grant", grant.id, grant.version);
  it->second = grant;
  it->second.version = grant.version + 1;
  return it->second.version;
}

absl::Status InMemoryCredentialStore::DeleteGrant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = grants_.find(id);
  if (it == grants_.end()) return RecordNotFound("grant", id);
  grants_.erase(it);
  if (auto l = leases_.find(id); l != leases_.end()) leases_.erase(l);
  if (auto t = access_tokens_.find(id); t != access_tokens_.end()) access_tokens_.erase(t);
  return absl::OkStatus();
}

absl::StatusOr<RefreshLease> InMemoryCredentialStore::AcquireRefreshLease(absl::string_view grant_id,
                                                                          absl::string_view holder,
                                                                          absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  if (grants_.find(grant_id) == grants_.end()) return RecordNotFound("grant", grant_id);
  const absl::Time now = clock_.Now();
  Lease& lease = leases_[std::string(grant_id)];
  if (lease.expire_time > now && !lease.holder.empty() && lease.holder != holder) {
    return RefreshLease{std::string(grant_id), lease.holder, lease.fence, false, false, lease.expire_time - now};
  }
  const bool took_over = !lease.holder.empty() && lease.holder != holder;
  lease = {std::string(holder), lease.fence + 1, now + ttl};
  return RefreshLease{std::string(grant_id), lease.holder, lease.fence, true, took_over, ttl};
}

absl::Status InMemoryCredentialStore::ReleaseRefreshLease(const RefreshLease& released) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(released.grant);
  if (it != leases_.end() && it->second.holder == released.holder && it->second.fence == released.fence) {
    it->second.holder.clear();
    it->second.expire_time = absl::InfinitePast();
  }
  return absl::OkStatus();
}

absl::Status InMemoryCredentialStore::CheckLease(const RefreshLease& lease) {
  auto it = leases_.find(lease.grant);
  if (it == leases_.end() || it->second.holder != lease.holder || it->second.fence != lease.fence) {
    return LeaseTakenOver(lease.grant, lease.holder, lease.fence);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> InMemoryCredentialStore::UpdateGrantUnderLease(const Grant& grant, const RefreshLease& lease) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckLease(lease));
  return UpdateGrantLocked(grant);
}

absl::StatusOr<std::optional<SharedAccessToken>> InMemoryCredentialStore::GetSharedAccessToken(
    absl::string_view grant_id) {
  absl::MutexLock lock(&mu_);
  auto it = access_tokens_.find(grant_id);
  if (it == access_tokens_.end()) return std::optional<SharedAccessToken>();
  return std::optional<SharedAccessToken>(it->second);
}

absl::Status InMemoryCredentialStore::PutSharedAccessToken(const SharedAccessToken& token, const RefreshLease& lease) {
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckLease(lease));
    SharedAccessToken& stored = access_tokens_[lease.grant];
    stored = token;
    stored.holder = lease.holder;
    stored.fence = lease.fence;
    Lease& held = leases_[lease.grant];
    held.holder.clear();
    held.expire_time = absl::InfinitePast();
  }
  return PublishChange(absl::StrCat("token:", lease.grant));
}

absl::Status InMemoryCredentialStore::DeleteSharedAccessToken(absl::string_view grant_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = access_tokens_.find(grant_id); it != access_tokens_.end()) access_tokens_.erase(it);
  return absl::OkStatus();
}

absl::Status InMemoryCredentialStore::PutPendingConsent(const PendingConsent& consent) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  for (auto it = consents_.begin(); it != consents_.end();) {
    it = absl::StartsWith(it->first, "auth:") && it->second.expire_time < now ? consents_.erase(it) : std::next(it);
  }
  consents_[consent.key] = consent;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<PendingConsent>> InMemoryCredentialStore::GetPendingConsent(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = consents_.find(key);
  if (it == consents_.end()) return std::optional<PendingConsent>();
  return std::optional<PendingConsent>(it->second);
}

absl::StatusOr<std::optional<PendingConsent>> InMemoryCredentialStore::TakePendingConsent(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = consents_.find(key);
  if (it == consents_.end()) return std::optional<PendingConsent>();
  std::optional<PendingConsent> taken(std::move(it->second));
  consents_.erase(it);
  return taken;
}

absl::StatusOr<std::vector<PendingConsent>> InMemoryCredentialStore::ClaimDueDeviceConsents(absl::Time now,
                                                                                           absl::Duration hold) {
  absl::MutexLock lock(&mu_);
  std::vector<PendingConsent> due;
  for (auto& [key, consent] : consents_) {
    if (!absl::StartsWith(key, "device:") || consent.next_poll > now) continue;
    consent.next_poll = now + hold;
    due.push_back(consent);
  }
  return due;
}

absl::StatusOr<bool> InMemoryCredentialStore::ReplacePendingConsent(const PendingConsent& consent,
                                                                    const std::string& expected_sealed) {
  absl::MutexLock lock(&mu_);
  auto it = consents_.find(consent.key);
  if (it == consents_.end() || it->second.sealed != expected_sealed) return false;
  if (consent.sealed.empty()) {
    consents_.erase(it);
  } else {
    it->second = consent;
  }
  return true;
}

absl::Status InMemoryCredentialStore::Heartbeat(absl::string_view id, absl::Time start_time) {
  absl::MutexLock lock(&mu_);
  ReplicaRecord& r = replicas_[std::string(id)];
  if (r.id.empty()) r = {std::string(id), start_time, absl::InfinitePast()};
  r.last_seen = clock_.Now();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ReplicaRecord>> InMemoryCredentialStore::LiveReplicas(absl::Duration within) {
  absl::MutexLock lock(&mu_);
  const absl::Time cutoff = clock_.Now() - within;
  std::vector<ReplicaRecord> live;
  for (auto it = replicas_.begin(); it != replicas_.end();) {
    if (it->second.last_seen < cutoff) {
      it = replicas_.erase(it);
    } else {
      live.push_back(it->second);
      ++it;
    }
  }
  return live;
}

absl::Status InMemoryCredentialStore::RemoveReplica(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  if (auto it = replicas_.find(id); it != replicas_.end()) replicas_.erase(it);
  return absl::OkStatus();
}

absl::Status InMemoryCredentialStore::PublishChange(absl::string_view change) {
  std::vector<std::function<void(absl::string_view)>> listeners;
  {
    absl::MutexLock lock(&listeners_mu_);
    listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(change);
  return absl::OkStatus();
}

void InMemoryCredentialStore::OnChange(std::function<void(absl::string_view change)> listener) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.push_back(std::move(listener));
}

absl::StatusOr<std::vector<SealedField>> InMemoryCredentialStore::ListSealedFields() {
  absl::MutexLock lock(&mu_);
  std::vector<SealedField> out;
  for (const auto& [id, app] : apps_) {
    std::vector<const AppCredential*> sorted;
    for (const AppCredential& c : app.credentials) sorted.push_back(&c);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (const AppCredential* c : sorted) {
      out.push_back({SealedField::Kind::kCredentialSecret, id, c->id, "", c->sealed_secret});
    }
  }
  for (const auto& [id, grant] : grants_) {
    if (!grant.sealed_refresh_token.empty()) {
      out.push_back({SealedField::Kind::kRefreshToken, "", "", id, grant.sealed_refresh_token});
    }
  }
  return out;
}

absl::StatusOr<bool> InMemoryCredentialStore::ReplaceSealedField(const SealedField& field,
                                                                 const std::string& resealed) {
  absl::MutexLock lock(&mu_);
  if (field.kind == SealedField::Kind::kCredentialSecret) {
    auto app = apps_.find(field.app);
    if (app == apps_.end()) return false;
    for (AppCredential& c : app->second.credentials) {
      if (c.id == field.credential && c.sealed_secret == field.sealed) {
        c.sealed_secret = resealed;
        ++app->second.version;
        return true;
      }
    }
    return false;
  }
  auto grant = grants_.find(field.grant);
  if (grant == grants_.end() || grant->second.sealed_refresh_token != field.sealed) return false;
  grant->second.sealed_refresh_token = resealed;
  ++grant->second.version;
  return true;
}

absl::StatusOr<int64_t> InMemoryCredentialStore::AppendAuditEvent(const AuditEvent& event) {
  absl::MutexLock lock(&mu_);
  AuditEvent stored = event;
  stored.id = next_audit_id_++;
  audit_[stored.id] = stored;
  return stored.id;
}

absl::Status InMemoryCredentialStore::AppendAuditEvents(const std::vector<AuditEvent>& events) {
  absl::MutexLock lock(&mu_);
  for (const AuditEvent& event : events) {
    AuditEvent stored = event;
    stored.id = next_audit_id_++;
    audit_[stored.id] = std::move(stored);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AuditEvent>> InMemoryCredentialStore::ListAuditEvents(const AuditFilter& f) {
  absl::MutexLock lock(&mu_);
  std::vector<AuditEvent> out;
  const int limit = f.limit > 0 ? f.limit : 100;
  for (auto it = audit_.rbegin(); it != audit_.rend() && static_cast<int>(out.size()) < limit; ++it) {
    const AuditEvent& e = it->second;
    if (f.before_id > 0 && e.id >= f.before_id) continue;
    if (!f.caller.empty() && e.caller != f.caller) continue;
    if (!f.action.empty() && e.action != f.action) continue;
    if (!f.grant.empty() && e.grant != f.grant) continue;
    if (!f.result.empty() && e.result != f.result) continue;
    if (e.time < f.since || e.time >= f.until) continue;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<int64_t> InMemoryCredentialStore::PruneAuditEvents(absl::Time before) {
  absl::MutexLock lock(&mu_);
  int64_t removed = 0;
  for (auto it = audit_.begin(); it != audit_.end();) {
    if (it->second.time < before) {
      it = audit_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

}  // namespace tokenbroker
