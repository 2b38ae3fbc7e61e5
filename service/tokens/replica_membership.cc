#include "service/tokens/replica_membership.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/crypto/random.h"

namespace tokenbroker {

uint64_t StableHash(absl::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string ReplicaMembership::MakeId(const std::string& configured) {
  if (!configured.empty()) return configured;
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "tokenbrokerd");
  return absl::StrCat(host, "-", RandomHex(3));
}

ReplicaMembership::ReplicaMembership(CredentialStore& store, const Clock& clock, Logger& logger,
                                     std::string replica_id, absl::Duration heartbeat_interval,
                                     std::function<void(size_t)> on_live)
    : store_(store),
      clock_(clock),
      logger_(logger),
      id_(std::move(replica_id)),
      interval_(heartbeat_interval),
      start_time_(clock.Now()),
      on_live_(std::move(on_live)) {}

absl::Status ReplicaMembership::Beat() {
  absl::Status status = store_.Heartbeat(id_, start_time_);
  absl::StatusOr<std::vector<ReplicaRecord>> live =
      status.ok() ? store_.LiveReplicas(interval_ * 3) : absl::StatusOr<std::vector<ReplicaRecord>>(status);
  absl::MutexLock lock(&mu_);
  if (!live.ok()) {
    if (!failing_) logger_.Warn("replica heartbeat failed", {{"replica", id_}, {"error", live.status()}});
    failing_ = true;
    return live.status();
  }
  if (failing_) logger_.Info("replica heartbeat works again", {{"replica", id_}});
  failing_ = false;
  std::vector<std::string> ids;
  for (const ReplicaRecord& r : *live) ids.push_back(r.id);
  if (ids != live_) logger_.Info("replicas alive", {{"replica", id_}, {"replicas", absl::StrJoin(ids, ",")}});
  live_ = std::move(ids);
  if (on_live_) on_live_(live_.size());
  return absl::OkStatus();
}

absl::Status ReplicaMembership::Start() {
  absl::Status status = Beat();
  task_ = std::make_unique<PeriodicTask>(interval_, [this] { (void)Beat(); });
  task_->Start();
  return status;
}

void ReplicaMembership::Stop() {
  if (task_ == nullptr) return;
  task_->Stop();
  task_.reset();
  (void)store_.RemoveReplica(id_);
}

std::vector<std::string> ReplicaMembership::Live() const {
  absl::MutexLock lock(&mu_);
  return live_;
}

bool ReplicaMembership::Owns(absl::string_view grant) const {
  absl::MutexLock lock(&mu_);
  auto self = std::find(live_.begin(), live_.end(), id_);
  if (self == live_.end()) return true;
  return StableHash(grant) % live_.size() == static_cast<size_t>(self - live_.begin());
}

}  // namespace tokenbroker
