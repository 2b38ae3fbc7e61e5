// The audit trail: every token issued, mail operation, admin change and
// refused call, as an AuditEvent (never a token or secret). Record() only
// queues, so the calls being audited never wait for the store; a writer
// thread writes the queue to the store in batches (one transaction each) and
// to the log, and prunes events older than the retention. When the store is
// down, events wait (up to max_pending) and are written when it is back;
// beyond that, new events are dropped and counted. Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_
#define TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/logging/logger.h"
#include "service/store/credential_store.h"

namespace tokenbroker {

struct AuditTrailOptions {
  size_t max_pending = 100000;
  size_t max_batch = 2000;
  absl::Duration retention = absl::Hours(24 * 90);
  absl::Duration prune_interval = absl::Hours(1);
  // How long the writer waits before retrying a store that failed.
  absl::Duration retry_interval = absl::Seconds(1);
  std::function<void()> on_dropped;
  std::function<void(bool ok)> on_write;
};

class AuditTrail {
 public:
  AuditTrail(CredentialStore& store, Logger& logger, const Clock& clock, AuditTrailOptions options = {});
  ~AuditTrail();

  // Starts the writer thread (which prunes once at once).
  void Start();
  // Writes what is queued (within `deadline`) and stops the writer.
  void Stop(absl::Duration deadline = absl::Seconds(10));

  // Queues `event`; its time is set here when unset.
  void Record(AuditEvent event);

  // Returns once every event recorded before the call is in the store, or
  // after `timeout`; false on timeout. Readers of the trail call this first
  // so that they see their own refusals.
  bool Flush(absl::Duration timeout = absl::Seconds(5));

 private:
  void Run();
  void Prune();

  CredentialStore& store_;
  Logger& logger_;
  const Clock& clock_;
  const AuditTrailOptions options_;
  absl::Mutex mu_;
  std::deque<AuditEvent> pending_ ABSL_GUARDED_BY(mu_);
  // Events ever recorded / ever written (or dropped): Flush waits for its
  // mark to be passed.
  uint64_t recorded_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t settled_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ = false;
  std::thread writer_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_
