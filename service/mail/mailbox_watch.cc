#include "service/mail/mailbox_watch.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "service/common/periodic_task.h"
#include "service/common/status_macros.h"

namespace tokenbroker {

absl::string_view EventKindName(MailboxEvent::Kind kind) {
  switch (kind) {
    case MailboxEvent::Kind::kNewMessage:
      return "new";
    case MailboxEvent::Kind::kExpunged:
      return "expunged";
    case MailboxEvent::Kind::kFlagsChanged:
      return "flags";
    case MailboxEvent::Kind::kResync:
      return "resync";
  }
  return "unknown";
}

namespace {

// A connection lost this soon after the last loss is retried after a
// backoff even when its session worked.
constexpr absl::Duration kQuickLossWindow = absl::Seconds(10);

// Failures a later login may not meet: the watch retries them.
bool Transient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s) ||
         absl::IsDataLoss(s) || absl::IsAborted(s);
}

}  // namespace

// One watched (grant, folder). The IMAP state (uids_, last_uid_, ...) is the
// watch thread's alone; members_ and the flags that other threads set are
// under mu_.
class MailboxWatch {
 public:
  enum class State { kConnecting, kCatchingUp, kIdling, kBackingOff, kEnded };
  static absl::string_view StateName(State state) {
    switch (state) {
      case State::kConnecting:
        return "connecting";
      case State::kCatchingUp:
        return "catching_up";
      case State::kIdling:
        return "idling";
      case State::kBackingOff:
        return "backing_off";
      case State::kEnded:
        return "ended";
    }
    return "unknown";
  }

  MailboxWatch(MailPool& pool, const Clock& clock, Logger& logger, const MailboxWatchOptions& options,
               std::string grant, std::string folder)
      : pool_(pool),
        clock_(clock),
        logger_(logger),
        options_(options),
        grant_(std::move(grant)),
        folder_(std::move(folder)),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        backoff_(options.initial_backoff),
        task_([this] { return NextWait(); }, [this] { RunOnce(); }) {}

  ~MailboxWatch() {
    Stop();
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  void Start() { task_.Start(); }

  // False when the watch is ending (the caller starts another).
  bool Add(uint64_t id, const MailboxWatches::Request& request, MailboxWatcher* watcher) {
    {
      absl::MutexLock lock(&mu_);
      if (ending_) return false;
      members_.push_back(Member{id, watcher, request.since_uid, request.uid_validity});
      catching_up_ = true;
    }
    if (options_.on_watchers) options_.on_watchers(1);
    Wake();
    return true;
  }

  // True when no watcher is left: the watch ends.
  bool Remove(uint64_t id) {
    bool removed = false, empty = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = std::find_if(members_.begin(), members_.end(), [id](const Member& m) { return m.id == id; });
      if (it != members_.end()) {
        members_.erase(it);
        removed = true;
      }
      if (members_.empty() && !ending_) ending_ = true;
      empty = members_.empty();
    }
    if (removed && options_.on_watchers) options_.on_watchers(-1);
    if (empty) Wake();
    return empty;
  }

  // A catching-up watcher made room.
  void Resume() {
    {
      absl::MutexLock lock(&mu_);
      catching_up_ = true;
    }
    Wake();
  }

  void Relogin() {
    {
      absl::MutexLock lock(&mu_);
      relogin_ = true;
    }
    Wake();
  }

  // Ends every watcher with `status`, and the watch.
  void End(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      EndAllLocked(status);
    }
    Wake();
  }

  // Waits for the body to finish (End or Remove first).
  void Stop() {
    Wake();
    task_.Stop();
  }

  bool ending() {
    absl::MutexLock lock(&mu_);
    return ending_;
  }
  bool body_over() {
    absl::MutexLock lock(&mu_);
    return body_over_;
  }

 private:
  struct Member {
    uint64_t id;
    MailboxWatcher* watcher;
    uint32_t since_uid;
    uint32_t uid_validity;
    // OnLive was called (and a resync sent if its UIDVALIDITY was stale).
    bool started = false;
    // Every new message up to this UID was sent to it.
    uint32_t sent_upto = 0;
    // Told each change as it comes; false while it catches up (its backlog,
    // or after it fell behind): then new messages reach it in pages as it
    // makes room, and other changes only for messages it has been sent.
    bool live = false;
  };

  void Wake() {
    if (wake_fd_ < 0) return;
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    task_.Wake();
  }
  void DrainWake() {
    uint64_t count;
    if (wake_fd_ >= 0) (void)!read(wake_fd_, &count, sizeof count);
  }

  absl::Duration NextWait() {
    absl::MutexLock lock(&mu_);
    return next_wait_;
  }

  void EndAllLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ending_ = true;
    state_ = State::kEnded;
    for (Member& m : members_) m.watcher->OnEnd(status);
    if (options_.on_watchers && !members_.empty()) options_.on_watchers(-static_cast<int>(members_.size()));
    members_.clear();
  }

  // The task's body: one login's worth of watching, then what to wait for
  // before the next.
  void RunOnce() {
    {
      absl::MutexLock lock(&mu_);
      if (ending_) {
        body_over_ = true;
        next_wait_ = absl::InfiniteDuration();
        return;
      }
      state_ = State::kConnecting;
      relogin_ = false;
    }
    reason_.clear();
    bool worked = false;
    const absl::Status status = pool_.Hold(
        grant_, "watch", [this, &worked](ImapSession& session, absl::Time token_expiry) {
          return Watch(session, token_expiry, worked);
        },
        // A dead pooled connection is this watch's to reconnect (and count).
        [] { return false; });
    DrainWake();
    absl::MutexLock lock(&mu_);
    if (ending_) {
      state_ = State::kEnded;
      body_over_ = true;
      next_wait_ = absl::InfiniteDuration();
      return;
    }
    if (status.ok()) {
      // Given back on purpose: a fresh login at once.
      logger_.Debug("a mailbox watch logs in again", {{"grant", grant_}, {"folder", folder_}, {"reason", reason_}});
      if (options_.on_reconnect) options_.on_reconnect(reason_);
      backoff_ = options_.initial_backoff;
      next_wait_ = absl::ZeroDuration();
      return;
    }
    if (Transient(status) && live_once_) {
      logger_.Warn("a mailbox watch lost its IMAP connection; reconnecting",
                   {{"grant", grant_},
                    {"folder", folder_},
                    {"while", StateName(state_)},
                    {"error", std::string(status.message())}});
      if (options_.on_reconnect) options_.on_reconnect("connection");
      // At once after a session that worked, unless the last loss was a
      // moment ago too (a server that drops every session is not hammered).
      const absl::Time now = clock_.Now();
      const bool at_once = worked && now - last_loss_ >= kQuickLossWindow;
      last_loss_ = now;
      if (at_once) backoff_ = options_.initial_backoff;
      next_wait_ = at_once ? absl::ZeroDuration() : backoff_;
      if (!at_once) backoff_ = std::min(backoff_ * 2, options_.max_backoff);
      state_ = State::kBackingOff;
      return;
    }
    // Nothing a retry would mend, or the watch never got going: the
    // watchers hear why.
    EndAllLocked(status);
    body_over_ = true;
    next_wait_ = absl::InfiniteDuration();
  }

  absl::Status Watch(ImapSession& session, absl::Time token_expiry, bool& worked) {
    struct Unobserve {
      ImapSession& session;
      ~Unobserve() { session.set_on_unsolicited(nullptr); }
    } unobserve{session};
    Mailbox mailbox(session);
    ASSIGN_OR_RETURN(ImapSelected selected, session.Examine(folder_));
    ASSIGN_OR_RETURN(std::vector<uint32_t> all, session.UidSearch(ImapSearchBuilder()));
    std::sort(all.begin(), all.end());
    {
      absl::MutexLock lock(&mu_);
      state_ = State::kCatchingUp;
      catching_up_ = true;  // those a lost connection interrupted go on
    }
    const uint32_t validity = static_cast<uint32_t>(selected.uid_validity);
    const uint32_t below_next =
        selected.uid_next > 0 ? static_cast<uint32_t>(selected.uid_next - 1) : (all.empty() ? 0 : all.back());
    if (uid_validity_ == 0 || validity != uid_validity_) {
      const bool changed = uid_validity_ != 0;
      uid_validity_ = validity;
      last_uid_ = below_next;
      uids_.clear();
      if (changed) {
        MailboxEvent resync;
        resync.kind = MailboxEvent::Kind::kResync;
        resync.uid_validity = validity;
        Tell(resync);
      }
    }
    session.set_on_unsolicited([this](const ImapResponse& r) { (void)OnUpdate(r, /*idling=*/false); });
    // What came and went while the watch was away.
    RETURN_IF_ERROR(Compare(mailbox, all));
    worked = true;
    live_once_ = true;
    while (true) {
      RETURN_IF_ERROR(CatchUp(mailbox));
      absl::Duration wait;
      {
        absl::MutexLock lock(&mu_);
        if (ending_) return absl::OkStatus();
        if (relogin_) {
          reason_ = "grant_changed";
          return absl::OkStatus();
        }
        wait = std::min(options_.idle_renew, token_expiry - options_.token_margin - clock_.Now());
        if (wait <= absl::ZeroDuration()) {
          reason_ = "token";
          return absl::OkStatus();
        }
        state_ = State::kIdling;
      }
      ASSIGN_OR_RETURN(ImapSession::IdleEnd end,
                       session.Idle(wait, wake_fd_, [this](const ImapResponse& r) { return OnUpdate(r, true); }));
      if (end == ImapSession::IdleEnd::kTimedOut && wait == options_.idle_renew) {
        logger_.Debug("a mailbox watch issues IDLE again", {{"grant", grant_}, {"folder", folder_}});
      }
      DrainWake();
      if (exists_ > uids_.size()) {
        ImapSearchBuilder after;
        after.UidRange(last_uid_ + 1, 0);
        ASSIGN_OR_RETURN(std::vector<uint32_t> found, session.UidSearch(after));
        std::sort(found.begin(), found.end());
        // "n:*" names the highest message even when it is below n.
        found.erase(std::remove_if(found.begin(), found.end(), [this](uint32_t u) { return u <= last_uid_; }),
                    found.end());
        RETURN_IF_ERROR(TellNew(mailbox, found));
      }
      if (exists_ != uids_.size()) {
        // Out of step (a response missed or misread): compare everything.
        ASSIGN_OR_RETURN(std::vector<uint32_t> now, session.UidSearch(ImapSearchBuilder()));
        std::sort(now.begin(), now.end());
        RETURN_IF_ERROR(Compare(mailbox, now));
      }
    }
  }

  // Makes `all` (the folder's UIDs, ascending) what the watch knows: tells
  // the UIDs it knew that are gone as expunged, and those above last_uid_ as
  // new.
  absl::Status Compare(Mailbox& mailbox, const std::vector<uint32_t>& all) {
    std::vector<uint32_t> gone;
    std::set_difference(uids_.begin(), uids_.end(), all.begin(), all.end(), std::back_inserter(gone));
    for (uint32_t uid : gone) TellUid(MailboxEvent::Kind::kExpunged, uid);
    std::vector<uint32_t> fresh;
    uids_.clear();
    for (uint32_t uid : all) (uid > last_uid_ ? fresh : uids_).push_back(uid);
    exists_ = static_cast<uint32_t>(all.size());
    return TellNew(mailbox, fresh);
  }

  // An untagged response about the selected folder; true to end the IDLE
  // (new messages to fetch).
  bool OnUpdate(const ImapResponse& r, bool idling) {
    if (r.name == "EXPUNGE" && r.number.has_value()) {
      const uint32_t seq = *r.number;
      if (seq >= 1 && seq <= uids_.size()) {
        const uint32_t uid = uids_[seq - 1];
        uids_.erase(uids_.begin() + (seq - 1));
        if (uid <= last_uid_) TellUid(MailboxEvent::Kind::kExpunged, uid);
      }
      if (exists_ > 0) --exists_;
      return false;
    }
    if (r.name == "EXISTS" && r.number.has_value()) {
      exists_ = *r.number;
      return exists_ > uids_.size();
    }
    if (r.name == "FETCH" && idling && r.number.has_value()) {
      uint32_t uid = *r.number >= 1 && *r.number <= uids_.size() ? uids_[*r.number - 1] : 0;
      const ImapValue* flags = nullptr;
      for (const auto& [name, value] : FetchAttributes(r)) {
        if (name == "UID") uid = static_cast<uint32_t>(value->Number().value_or(uid));
        if (name == "FLAGS") flags = value;
      }
      if (flags != nullptr && uid != 0 && uid <= last_uid_) {
        MailboxEvent e;
        e.kind = MailboxEvent::Kind::kFlagsChanged;
        e.uid_validity = uid_validity_;
        e.uid = uid;
        for (const ImapValue& f : flags->list) e.flags.push_back(f.Str());
        Tell(e);
      }
    }
    return false;
  }

  // Fetches and tells `uids` (above last_uid_, ascending) as new messages.
  absl::Status TellNew(Mailbox& mailbox, const std::vector<uint32_t>& uids) {
    for (size_t at = 0; at < uids.size(); at += Mailbox::kMaxUidsPerFetch) {
      const std::vector<uint32_t> chunk(uids.begin() + at,
                                        uids.begin() + std::min(uids.size(), at + Mailbox::kMaxUidsPerFetch));
      // In the sequence before the fetch, so that an EXPUNGE during it maps.
      uids_.insert(uids_.end(), chunk.begin(), chunk.end());
      ASSIGN_OR_RETURN(std::vector<MailSummary> summaries, mailbox.Summaries(chunk));
      for (MailSummary& s : summaries) {
        MailboxEvent e = NewMessage(std::move(s));
        last_uid_ = std::max(last_uid_, e.uid);
        Tell(e);
      }
      last_uid_ = std::max(last_uid_, chunk.back());
    }
    return absl::OkStatus();
  }

  // Serves the watchers that are catching up: starts the new ones (a
  // resync if their UIDVALIDITY is old; their backlog from since_uid), then
  // sends each the next page of new messages it has room for, until none
  // can take more. One that has room no longer is resumed by Resume().
  absl::Status CatchUp(Mailbox& mailbox) {
    while (true) {
      struct Page {
        uint64_t id;
        std::vector<uint32_t> uids;
      };
      std::vector<Page> pages;
      {
        absl::MutexLock lock(&mu_);
        if (!catching_up_) return absl::OkStatus();
        catching_up_ = false;
        for (Member& m : members_) {
          if (m.live) continue;
          if (!m.started) StartLocked(m);
          auto from = std::upper_bound(uids_.begin(), uids_.end(), m.sent_upto);
          auto to = std::upper_bound(uids_.begin(), uids_.end(), last_uid_);
          if (from >= to) {
            m.sent_upto = std::max(m.sent_upto, last_uid_);
            m.live = true;
            continue;
          }
          const size_t room = std::min(m.watcher->Room(), Mailbox::kMaxUidsPerFetch);
          if (room == 0) continue;  // Resume() brings it back
          pages.push_back(Page{m.id, std::vector<uint32_t>(from, from + std::min<ptrdiff_t>(room, to - from))});
        }
      }
      if (pages.empty()) return absl::OkStatus();
      for (Page& page : pages) {
        ASSIGN_OR_RETURN(std::vector<MailSummary> summaries, mailbox.Summaries(page.uids));
        absl::MutexLock lock(&mu_);
        auto it = std::find_if(members_.begin(), members_.end(), [&page](const Member& m) { return m.id == page.id; });
        if (it == members_.end()) continue;  // gone meanwhile
        for (MailSummary& s : summaries) TellOneLocked(*it, NewMessage(std::move(s)));
        it->sent_upto = std::max(it->sent_upto, page.uids.back());
      }
      absl::MutexLock lock(&mu_);
      catching_up_ = true;  // another round: the next pages, or live
    }
  }

  void StartLocked(Member& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    m.started = true;
    m.watcher->OnLive(uid_validity_);
    const bool stale = m.uid_validity != 0 && m.uid_validity != uid_validity_;
    if (stale) {
      MailboxEvent resync;
      resync.kind = MailboxEvent::Kind::kResync;
      resync.uid_validity = uid_validity_;
      TellOneLocked(m, resync);
    }
    m.sent_upto = stale || m.since_uid == 0 || m.since_uid > last_uid_ ? last_uid_ : m.since_uid;
  }

  void TellOneLocked(Member& m, const MailboxEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    m.watcher->OnEvent(e);
    if (options_.on_event) options_.on_event(EventKindName(e.kind));
  }

  MailboxEvent NewMessage(MailSummary summary) const {
    MailboxEvent e;
    e.kind = MailboxEvent::Kind::kNewMessage;
    e.uid_validity = uid_validity_;
    e.uid = summary.uid;
    e.summary = std::move(summary);
    return e;
  }

  void TellUid(MailboxEvent::Kind kind, uint32_t uid) {
    MailboxEvent e;
    e.kind = kind;
    e.uid_validity = uid_validity_;
    e.uid = uid;
    Tell(e);
  }

  // To every watcher it concerns: live ones are told everything, unless a
  // new message finds one without room (it falls back to catching up, from
  // the last message it was sent); those catching up are told expunges and
  // flag changes of messages they were sent, and a resync (which ends their
  // catching up: the UIDs they were behind on name nothing now).
  void Tell(const MailboxEvent& e) {
    absl::MutexLock lock(&mu_);
    for (Member& m : members_) {
      if (!m.started) continue;
      switch (e.kind) {
        case MailboxEvent::Kind::kNewMessage:
          if (m.live && m.watcher->Room() == 0) {
            m.live = false;
            catching_up_ = true;
            logger_.Debug("a mailbox watcher fell behind; it gets new messages as it reads",
                          {{"grant", grant_}, {"folder", folder_}, {"uid", static_cast<int64_t>(m.sent_upto)}});
          }
          if (!m.live) continue;
          m.sent_upto = e.uid;
          break;
        case MailboxEvent::Kind::kResync:
          m.sent_upto = last_uid_;
          m.live = true;
          break;
        default:
          if (!m.live && e.uid > m.sent_upto) continue;
          break;
      }
      TellOneLocked(m, e);
    }
  }

  MailPool& pool_;
  const Clock& clock_;
  Logger& logger_;
  const MailboxWatchOptions& options_;
  const std::string grant_;
  const std::string folder_;
  const int wake_fd_;

  // The watch thread's own.
  uint32_t uid_validity_ = 0;
  // The highest UID told (or, at the start, below UIDNEXT).
  uint32_t last_uid_ = 0;
  // The folder's UIDs in sequence order, up to the last told.
  std::vector<uint32_t> uids_;
  uint32_t exists_ = 0;
  bool live_once_ = false;
  std::string reason_;

  absl::Mutex mu_;
  std::vector<Member> members_ ABSL_GUARDED_BY(mu_);
  // Some watcher may be catching up (cleared when none can make progress).
  bool catching_up_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool relogin_ ABSL_GUARDED_BY(mu_) = false;
  bool body_over_ ABSL_GUARDED_BY(mu_) = false;
  State state_ ABSL_GUARDED_BY(mu_) = State::kConnecting;
  absl::Duration next_wait_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  absl::Time last_loss_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Declared last: its thread stops before the rest goes.
  PeriodicTask task_;
};

MailboxWatches::MailboxWatches(MailPool& pool, const Clock& clock, Logger& logger, MailboxWatchOptions options)
    : pool_(pool), clock_(clock), logger_(logger), options_(std::move(options)) {}

MailboxWatches::~MailboxWatches() { Shutdown(); }

absl::StatusOr<uint64_t> MailboxWatches::Subscribe(const Request& request, MailboxWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("tokenbrokerd is shutting down");
  ReapLocked();
  if (by_id_.size() >= options_.max_watchers) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the broker already serves ", by_id_.size(), " mailbox watchers; retry later"));
  }
  const Key key{request.grant, request.folder};
  const uint64_t id = next_id_++;
  auto it = live_.find(key);
  if (it != live_.end()) {
    if (it->second->Add(id, request, watcher)) {
      by_id_[id] = it->second;
      return id;
    }
    ending_.push_back(it->second);
    live_.erase(it);
  }
  size_t folders = 0;
  for (auto g = live_.lower_bound(Key{request.grant, ""}); g != live_.end() && g->first.first == request.grant;) {
    if (g->second->ending()) {
      ending_.push_back(g->second);
      g = live_.erase(g);
      continue;
    }
    ++folders;
    ++g;
  }
  if (folders >= options_.max_folders_per_grant) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "grant \"", request.grant, "\" already has ", folders,
        " watched folders, each on a connection of its own (at most ", options_.max_folders_per_grant,
        ", so that one connection is left for other calls); watch fewer folders or raise "
        "mail.max_connections_per_mailbox"));
  }
  auto watch = std::make_shared<MailboxWatch>(pool_, clock_, logger_, options_, request.grant, request.folder);
  watch->Add(id, request, watcher);
  watch->Start();
  live_[key] = watch;
  by_id_[id] = watch;
  return id;
}

void MailboxWatches::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  std::shared_ptr<MailboxWatch> watch = std::move(it->second);
  by_id_.erase(it);
  if (watch->Remove(id)) {
    for (auto l = live_.begin(); l != live_.end(); ++l) {
      if (l->second == watch) {
        live_.erase(l);
        break;
      }
    }
    if (std::find(ending_.begin(), ending_.end(), watch) == ending_.end()) ending_.push_back(watch);
  }
  ReapLocked();
}

void MailboxWatches::Resume(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it != by_id_.end()) it->second->Resume();
}

void MailboxWatches::ReapLocked() {
  for (auto it = ending_.begin(); it != ending_.end();) {
    if ((*it)->body_over()) {
      (*it)->Stop();  // the body is over: returns at once
      it = ending_.erase(it);
    } else {
      ++it;
    }
  }
}

void MailboxWatches::Forget(absl::string_view grant) {
  absl::MutexLock lock(&mu_);
  for (auto& [key, watch] : live_) {
    if (grant == "*" || key.first == grant) watch->Relogin();
  }
}

void MailboxWatches::Shutdown() {
  std::vector<std::shared_ptr<MailboxWatch>> all;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [key, watch] : live_) all.push_back(watch);
    for (auto& watch : ending_) all.push_back(watch);
    live_.clear();
    ending_.clear();
    by_id_.clear();
  }
  for (auto& watch : all) watch->End(absl::UnavailableError("tokenbrokerd is shutting down; watch again"));
  for (auto& watch : all) watch->Stop();
}

}  // namespace tokenbroker
