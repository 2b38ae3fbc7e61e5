// Mailbox: what the broker does with one mailbox, in domain terms, over one
// authenticated IMAP session (borrowed from MailPool::Run). It chooses the
// IMAP commands, parses what comes back into types with parsed times, and
// owns the mail behaviour callers rely on: special-use detection, search
// ordering and limits, and the UIDVALIDITY check before a fetch. It knows
// nothing of gRPC: api/ admits, validates, converts and streams.
//
// Not thread-safe (the session it wraps is not); short-lived, one per call.
#ifndef TOKENBROKER_SERVICE_MAIL_MAILBOX_H_
#define TOKENBROKER_SERVICE_MAIL_MAILBOX_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "absl/time/time.h"
#include "service/imap/imap_session.h"

namespace tokenbroker {

struct MailFolder {
  std::string name;       // UTF-8
  std::string delimiter;  // "" when the server's folders are flat
  std::vector<std::string> attributes;
  // The RFC 6154 attribute (\Sent, \Trash, \Drafts, \Junk, \Archive, \All,
  // \Flagged) as the server spelled it; "" for none.
  std::string special_use;
};

struct MailFolderStatus {
  std::string folder;
  uint32_t messages = 0;
  uint32_t unseen = 0;
  uint32_t uid_next = 0;
  uint32_t uid_validity = 0;
};

struct MailAddress {
  std::string name;
  std::string email;
};

struct MailSummary {
  uint32_t uid = 0;
  std::vector<std::string> flags;
  uint64_t size = 0;
  std::optional<absl::Time> internal_date;  // when the server received it
  std::string subject;
  std::vector<MailAddress> from, to, cc;
  std::optional<absl::Time> date;  // the Date header, when it parses
  std::string message_id;
  std::string in_reply_to;
};

struct MailQuery {
  std::optional<absl::Time> since, before;  // by day, as IMAP compares
  std::string from, to, subject;            // substrings; "" = any
  bool unseen_only = false;
  uint32_t uid_min = 0, uid_max = 0;  // 0 = open
  std::string header_name, header_value;
  // At most this many summaries (0: kDefaultSearchLimit; at most
  // kMaxSearchLimit), the newest (highest UIDs) unless oldest_first.
  size_t limit = 0;
  bool oldest_first = false;
};

struct MailSearchResult {
  uint32_t total_matches = 0;
  uint32_t uid_validity = 0;
  // In the order asked for: newest first unless oldest_first.
  std::vector<MailSummary> messages;
};

// What is known of a fetched message before its first byte.
struct MailFetchStart {
  uint32_t uid = 0;
  uint32_t uid_validity = 0;
  uint64_t size = 0;  // of the section fetched
  // Valid during the OnStart call only.
  absl::Span<const std::string> flags;
  std::optional<absl::Time> internal_date;
};

class Mailbox {
 public:
  static constexpr size_t kDefaultSearchLimit = 100;
  static constexpr size_t kMaxSearchLimit = 1000;
  static constexpr size_t kMaxUidsPerFetch = ImapSession::kMaxUidsPerFetch;

  explicit Mailbox(ImapSession& session) : session_(session) {}

  absl::StatusOr<std::vector<MailFolder>> Folders();
  // NOT_FOUND naming the folder when it does not exist.
  absl::StatusOr<MailFolderStatus> Status(absl::string_view folder);
  // INVALID_ARGUMENT naming the field for a query the server cannot be sent
  // (see ValidateQuery).
  absl::StatusOr<MailSearchResult> Search(absl::string_view folder, const MailQuery& query);

  // The summaries of `uids` in the selected folder, lowest UID first
  // (UIDs that do not exist are left out); at most kMaxUidsPerFetch.
  absl::StatusOr<std::vector<MailSummary>> Summaries(const std::vector<uint32_t>& uids);

  using OnStart = std::function<absl::Status(const MailFetchStart&)>;
  using Sink = std::function<absl::Status(absl::string_view chunk)>;
  // Streams one message, or the `section` of it ("" for the whole message,
  // "HEADER", or a body part such as "1.2" or "1.MIME"): `on_start` once, then `sink` with
  // chunks of at most `chunk_size` bytes as the server sends them.
  // FAILED_PRECONDITION when `uid_validity` (0: unchecked) is not the
  // folder's; NOT_FOUND when there is no such message.
  absl::Status Fetch(absl::string_view folder, uint32_t uid_validity, uint32_t uid, absl::string_view section,
                     size_t chunk_size, const OnStart& on_start, const Sink& sink);
  // Streams many messages in one round trip, each as `on_start` then `sink`;
  // UIDs that do not exist are skipped. Returns how many messages came.
  absl::StatusOr<uint64_t> FetchMany(absl::string_view folder, uint32_t uid_validity,
                                     const std::vector<uint32_t>& uids, absl::string_view section,
                                     size_t chunk_size, const OnStart& on_start, const Sink& sink);

 private:
  // Selects `folder` (read-only) and checks the caller's UIDVALIDITY.
  absl::StatusOr<ImapSelected> Open(absl::string_view folder, uint32_t uid_validity);

  ImapSession& session_;
};

// INVALID_ARGUMENT naming the field ("criteria.uid_max", "limit", ...) when
// `query` cannot be sent; cheap, so callers check before queueing work.
absl::Status ValidateQuery(const MailQuery& query);
// The RFC 6154 special-use attribute among `attributes`, or "".
std::string SpecialUse(const std::vector<std::string>& attributes);
// IMAP's INTERNALDATE ("27-Nov-2026 10:00:00 +0100", day may be space-padded).
std::optional<absl::Time> ParseImapDateTime(absl::string_view s);
// An RFC 5322 Date header (with or without the weekday or seconds, with a
// trailing comment such as "(UTC)").
std::optional<absl::Time> ParseMailDate(absl::string_view s);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_MAIL_MAILBOX_H_
