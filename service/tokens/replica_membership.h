// ReplicaMembership: which replicas on the shared store are alive, and which
// of them does a grant's background work first.
//
// Every heartbeat_interval the replica writes its heartbeat (the store's
// clock) and reads the replicas seen within three intervals; a replica
// missing for longer is gone and its grants fall to the others. Owns(grant)
// spreads grants over the live replicas by a stable hash of the grant id; the
// views of two replicas differ for a moment when one joins or leaves, so
// ownership only decides who goes first: the grant's refresh lease is what
// makes a refresh happen once. Thread-safe.
#ifndef TOKENBROKER_SERVICE_TOKENS_REPLICA_MEMBERSHIP_H_
#define TOKENBROKER_SERVICE_TOKENS_REPLICA_MEMBERSHIP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/common/periodic_task.h"
#include "service/logging/logger.h"
#include "service/store/credential_store.h"

namespace tokenbroker {

class ReplicaMembership {
 public:
  // `on_live` hears how many replicas are alive after every heartbeat.
  ReplicaMembership(CredentialStore& store, const Clock& clock, Logger& logger, std::string replica_id,
                    absl::Duration heartbeat_interval, std::function<void(size_t alive)> on_live = nullptr);
  ~ReplicaMembership() { Stop(); }

  // Writes the heartbeat and re-reads who is alive. Start() does it every
  // interval; the first one before Start() returns.
  absl::Status Beat();
  absl::Status Start();
  // Stops the heartbeat and removes this replica's record, so that the others
  // take its grants over at once.
  void Stop();

  const std::string& id() const { return id_; }
  // The live replicas as last read (this one included), sorted.
  std::vector<std::string> Live() const;
  // Whether this replica goes first for `grant`'s background work. True while
  // nothing is known yet (alone, or the store unreachable).
  bool Owns(absl::string_view grant) const;

  // A name for this replica: `configured` when set, else the host name (the
  // pod's name on Kubernetes) with a random suffix, unique per process.
  static std::string MakeId(const std::string& configured);

 private:
  CredentialStore& store_;
  const Clock& clock_;
  Logger& logger_;
  const std::string id_;
  const absl::Duration interval_;
  const absl::Time start_time_;
  const std::function<void(size_t)> on_live_;
  mutable absl::Mutex mu_;
  std::vector<std::string> live_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<PeriodicTask> task_;
};

// A stable 64-bit hash of a string (FNV-1a): the same in every replica and
// every build.
uint64_t StableHash(absl::string_view s);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_TOKENS_REPLICA_MEMBERSHIP_H_
