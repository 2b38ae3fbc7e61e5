// The audit trail: every token issued, mail operation, admin change and
// refused call, as an AuditEvent (never a token or secret). Record() only
// queues, so the calls being audited never wait for the store; a writer
// thread writes the queue to the store in batches (one transaction each) and
// to the log, and prunes events older than the retention. When the store is
// down, events wait (up to max_pending) and are written when it is back;
// beyond that, new events are dropped and counted. Thread-safe.
#ifndef TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_
#define TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/container/flat_hash_map.h"
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
  // How long the first event of a batch waits for others (fewer, larger
  // transactions under load; Flush does not wait).
  absl::Duration batch_delay = absl::Milliseconds(100);
  bool coalesce_cache_hits = true;
  // Which events also go to the log (info level); the store gets them all.
  enum class LogEvents { kFailures, kAll, kNone };
  LogEvents log_events = LogEvents::kFailures;
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

  // A token answered from the cache. With coalesce_cache_hits, the hits of
  // one caller on one grant between two writes (batch_delay) become one
  // event, "cache hits: N", with the first call's time and request id;
  // otherwise each is its own event. Cheap on the caller's thread either way.
  void RecordCacheHit(absl::string_view caller, absl::string_view action, absl::string_view method,
                      absl::string_view grant, absl::string_view request_id);

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
  // Coalesced cache hits by caller, grant and method: the event (count in
  // `count`) waiting for the next write. A hit on a key already there only
  // takes hits_mu_ shared and counts, so that cache hits on many threads
  // neither queue for mu_ nor wake the writer, which waits on mu_; the first
  // hit of a key takes both (mu_ first) and is one more recorded event.
  struct CoalescedHits {
    explicit CoalescedHits(AuditEvent e) : event(std::move(e)) {}
    AuditEvent event;
    std::atomic<uint64_t> count{0};
  };
  absl::Mutex hits_mu_ ABSL_ACQUIRED_AFTER(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<CoalescedHits>> cache_hits_ ABSL_GUARDED_BY(hits_mu_);
  // How many keys cache_hits_ holds (changed only under both locks).
  size_t coalesced_ ABSL_GUARDED_BY(mu_) = 0;
  // Events ever recorded / ever written (or dropped): Flush waits for its
  // mark to be passed.
  uint64_t recorded_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t settled_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Flush() callers waiting: the writer does not wait for a batch to fill.
  int flushing_ ABSL_GUARDED_BY(mu_) = 0;
  bool running_ = false;
  std::thread writer_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_AUDIT_AUDIT_TRAIL_H_
