// MailboxWatches: MailService.WatchMailbox's engine. Every watched (grant,
// folder) has one MailboxWatch: one IMAP connection of the grant's pool
// (MailPool::Hold, so it counts toward the per-mailbox limit) in IDLE, shared
// by every caller watching that folder, and one thread (a PeriodicTask whose
// body is one login's worth of watching).
//
// A watch goes through named states: connecting (login, EXAMINE, UID SEARCH
// ALL), catching_up (the messages that came while it was away, and the
// backlogs of the watchers), idling (IDLE, re-issued every idle_renew and
// given up in time for a fresh login before the token expires), backing_off
// (after a lost connection, doubling from initial_backoff; the first retry
// after a working session is at once unless the last loss was under 10 s
// before), ended.
//
// A watcher that has no room is not sent new messages until it makes some;
// then it gets them in pages, in order, from where it was (its backlog from
// since_uid goes the same way). So a slow caller holds up neither the
// others nor memory.
//
// No message is missed: the watch knows the highest UID it has told
// (`last_uid`) and every UID in the folder; after any reconnect it compares
// (UID SEARCH ALL) and tells what came (new) and what went (expunged) before
// it idles again. A changed UIDVALIDITY is told as `resync`. Flag changes
// are told as the server reports them while idling; changes made while the
// watch was disconnected are not (IMAP without CONDSTORE cannot say which).
//
// Watchers are told on the watch's thread, in order, under the watch's lock:
// they must be quick (queue and return) and must not call back in.
#ifndef TOKENBROKER_SERVICE_MAIL_MAILBOX_WATCH_H_
#define TOKENBROKER_SERVICE_MAIL_MAILBOX_WATCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/logging/logger.h"
#include "service/mail/mail_pool.h"
#include "service/mail/mailbox.h"

namespace tokenbroker {

struct MailboxEvent {
  enum class Kind { kNewMessage, kExpunged, kFlagsChanged, kResync };
  Kind kind = Kind::kNewMessage;
  uint32_t uid_validity = 0;
  // kNewMessage, kExpunged, kFlagsChanged.
  uint32_t uid = 0;
  // kNewMessage: what SearchMessages returns for it.
  MailSummary summary;
  // kFlagsChanged: the message's flags now.
  std::vector<std::string> flags;
};
// "new", "expunged", "flags", "resync" (metric labels, CLI output).
absl::string_view EventKindName(MailboxEvent::Kind kind);

class MailboxWatcher {
 public:
  virtual ~MailboxWatcher() = default;
  // Every change from now on reaches this watcher (after the backlog it
  // asked for): the folder's UIDVALIDITY.
  virtual void OnLive(uint32_t uid_validity) = 0;
  virtual void OnEvent(const MailboxEvent& event) = 0;
  // How many more events it can take now. A watcher with none is sent new
  // messages again (in order, from where it was) once it calls
  // MailboxWatches::Resume: a slow watcher slows only itself.
  virtual size_t Room() = 0;
  // The watch ended for this watcher; nothing follows.
  virtual void OnEnd(const absl::Status& status) = 0;
};

struct MailboxWatchOptions {
  // IDLE is ended and issued again this often (RFC 2177: servers may drop a
  // client idle for 30 minutes).
  absl::Duration idle_renew = absl::Minutes(25);
  // The connection is given back and a fresh one logged in when its token
  // has less than this left.
  absl::Duration token_margin = absl::Minutes(2);
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(1);
  // A grant's watches use at most this many of its pool's connections
  // (max_per_mailbox - 1: one is left for the other calls).
  size_t max_folders_per_grant = 1;
  // Watchers in all, at most.
  size_t max_watchers = 10000;
  // Metrics: an event told (per watcher), a reconnect and why
  // ("connection", "token", "grant_changed", "renew"), watchers +1/-1.
  std::function<void(absl::string_view kind)> on_event;
  std::function<void(absl::string_view reason)> on_reconnect;
  std::function<void(int delta)> on_watchers;
};

class MailboxWatch;

class MailboxWatches {
 public:
  MailboxWatches(MailPool& pool, const Clock& clock, Logger& logger, MailboxWatchOptions options);
  ~MailboxWatches();

  struct Request {
    std::string grant;
    std::string folder;
    // The highest UID the watcher has seen (0: tell only what comes from
    // now on) and the UIDVALIDITY it belongs to (0: unchecked).
    uint32_t since_uid = 0;
    uint32_t uid_validity = 0;
  };
  // Starts (or joins) the folder's watch. Quick: the IMAP work happens on the
  // watch's thread, which calls `watcher` until OnEnd or Unsubscribe.
  // RESOURCE_EXHAUSTED when the grant watches too many folders or there are
  // too many watchers; UNAVAILABLE when shutting down.
  absl::StatusOr<uint64_t> Subscribe(const Request& request, MailboxWatcher* watcher);
  // The watcher has room again (see MailboxWatcher::Room). Must not be
  // called under a lock the watcher's callbacks take.
  void Resume(uint64_t id);
  // After it returns the watcher is never called again. Unknown ids (ended
  // watchers) are ignored.
  void Unsubscribe(uint64_t id);
  // The grant changed (disabled, re-consented, deleted): its watches log in
  // again, reading the grant afresh; "*": every grant.
  void Forget(absl::string_view grant);
  // Ends every watcher with UNAVAILABLE and stops every watch.
  void Shutdown();

 private:
  using Key = std::pair<std::string, std::string>;  // grant, folder
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MailPool& pool_;
  const Clock& clock_;
  Logger& logger_;
  const MailboxWatchOptions options_;
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<Key, std::shared_ptr<MailboxWatch>> live_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<MailboxWatch>> by_id_ ABSL_GUARDED_BY(mu_);
  // Watches that ended or are ending, stopped (joined) once their body is over.
  std::vector<std::shared_ptr<MailboxWatch>> ending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_MAIL_MAILBOX_WATCH_H_
