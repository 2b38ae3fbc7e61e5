#include "service/store/in_memory_credential_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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
  for (const std::string& grant_id : users) grants_.erase(grant_id);
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
  for (const auto& [id, grant] : grants_) {
    if (!filter.app.empty() && grant.app != filter.app) continue;
    if (filter.state.has_value() && grant.state != *filter.state) continue;
    out.push_back(grant);
  }
  return out;
}

absl::StatusOr<int64_t> InMemoryCredentialStore::UpdateGrant(const Grant& grant) {
  absl::MutexLock lock(&mu_);
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
  return absl::OkStatus();
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
