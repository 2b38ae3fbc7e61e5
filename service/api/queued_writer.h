// QueuedWriteReactor: a server stream whose messages other threads queue (a
// watch's changes), written one at a time, in order, by gRPC's write
// completions. At most `max_queued` messages wait: a caller that falls
// further behind is ended with OverflowStatusLocked(). The stream finishes
// once, with the first status given, after the write in flight; while the
// finish is held (HoldFinishLocked, until ReleaseFinishLocked) a status is
// only remembered. Used by WatchGrants and WatchMailbox.
#ifndef TOKENBROKER_SERVICE_API_QUEUED_WRITER_H_
#define TOKENBROKER_SERVICE_API_QUEUED_WRITER_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/api/reactors.h"

namespace tokenbroker {

template <typename Message>
class QueuedWriteReactor : public grpc::ServerWriteReactor<Message> {
 public:
  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(absl::CancelledError("the watcher went away"));
      } else if (end_.has_value()) {
        FinishLocked(*end_);
      } else if (overflowed_) {
        FinishLocked(OverflowStatusLocked());
      } else {
        WriteNextLocked();
      }
      AfterWriteLocked();
    }
    AfterWrite();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(absl::CancelledError("the watcher cancelled the watch"));
  }

 protected:
  explicit QueuedWriteReactor(size_t max_queued) : max_queued_(max_queued) {}

  // Queues `message` (written at once when no write is in flight). False
  // when it was not queued: the stream is finishing, or the caller is
  // max_queued behind (it is then ended once the write in flight is done).
  bool PushLocked(Message message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || end_.has_value() || overflowed_) return false;
    if (queue_.size() >= max_queued_) {
      overflowed_ = true;
      if (!writing_) FinishLocked(OverflowStatusLocked());
      return false;
    }
    queue_.push_back(std::move(message));
    if (!writing_) WriteNextLocked();
    return true;
  }

  // Sends the initial metadata unless it went already (it goes with the
  // first write).
  void SendMetadataLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (metadata_sent_ || finished_) return;
    metadata_sent_ = true;
    this->StartSendInitialMetadata();
  }

  // Finishes once, with the first status given; while a write is in flight
  // or the finish is held it only remembers it.
  void FinishLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (!end_.has_value()) end_ = status;
    if (writing_ || held_) return;
    finished_ = true;
    final_ = *end_;
    queue_.clear();
    this->Finish(ToGrpcStatus(*end_));
  }

  void HoldFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { held_ = true; }
  // Finishes now if a status came while held.
  void ReleaseFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    held_ = false;
    if (end_.has_value()) FinishLocked(*end_);
  }

  size_t QueuedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size(); }
  // No more messages are taken.
  bool EndingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ || end_.has_value() || overflowed_;
  }
  bool FinishedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; }
  bool MetadataSentLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return metadata_sent_; }

  // The status of a caller that fell more than max_queued behind.
  virtual absl::Status OverflowStatusLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // As a message's write starts.
  virtual void WritingLocked(const Message&) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  // After each completed write: under mu_, then without it.
  virtual void AfterWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  virtual void AfterWrite() {}

  const size_t max_queued_;
  absl::Mutex mu_;
  // How the stream finished (set when it did; read in OnDone).
  absl::Status final_;
  // Messages written.
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || end_.has_value() || queue_.empty()) return;
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    WritingLocked(in_flight_);
    writing_ = true;
    metadata_sent_ = true;  // with the first write
    ++written_;
    this->StartWrite(&in_flight_);
  }

  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  Message in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_QUEUED_WRITER_H_
