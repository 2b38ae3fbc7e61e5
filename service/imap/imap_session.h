// ImapSession: one authenticated IMAP connection. Opens TLS (implicit or
// STARTTLS), authenticates with SASL XOAUTH2 or OAUTHBEARER using SASL-IR,
// confirms the session with a harmless command, and runs the read-only
// commands the broker needs. Every caller string is checked (no CR, LF, NUL;
// bounded) and sent quoted or as a literal, never spliced into a command.
// Message bodies are streamed in chunks as they arrive. Not thread-safe: one
// caller at a time (the pool hands sessions out exclusively).
#ifndef TOKENBROKER_SERVICE_IMAP_IMAP_SESSION_H_
#define TOKENBROKER_SERVICE_IMAP_IMAP_SESSION_H_

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/common/secret.h"
#include "service/imap/imap_parser.h"
#include "service/imap/imap_transport.h"

namespace tokenbroker {

struct ImapServer {
  std::string host;
  int port = 993;
  bool starttls = false;  // false: implicit TLS
  std::string ca_file;    // empty: the system's CAs
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration io_timeout = absl::Seconds(60);
};

enum class SaslMechanism { kXoauth2, kOauthbearer };

class ImapSearchBuilder;

struct ImapFolder {
  std::string name;       // UTF-8
  std::string delimiter;  // "" when flat
  std::vector<std::string> attributes;  // \HasNoChildren, \Sent, \Noselect, ...
};

struct ImapFolderStatus {
  uint64_t messages = 0;
  uint64_t unseen = 0;
  uint64_t uid_next = 0;
  uint64_t uid_validity = 0;
};

struct ImapAddress {
  std::string name;     // decoded to UTF-8
  std::string address;  // mailbox@host
};

struct ImapEnvelope {
  std::string date;
  std::string subject;  // decoded to UTF-8
  std::vector<ImapAddress> from, sender, reply_to, to, cc, bcc;
  std::string in_reply_to;
  std::string message_id;
};

struct ImapMessageSummary {
  uint32_t uid = 0;
  std::vector<std::string> flags;
  uint64_t size = 0;
  std::string internal_date;  // as the server sends it ("17-Jul-1996 02:44:25 -0700")
  ImapEnvelope envelope;
};

struct ImapSelected {
  std::string folder;
  uint64_t uid_validity = 0;
  uint64_t exists = 0;
  uint64_t uid_next = 0;
};

// The answer of an IMAP server to a failed command, as a status: NOT_FOUND for
// a missing folder, UNAUTHENTICATED for AUTHENTICATIONFAILED, UNAVAILABLE for
// UNAVAILABLE or BYE, RESOURCE_EXHAUSTED for LIMIT, FAILED_PRECONDITION else.
absl::Status ImapCommandFailure(const ImapResponse& response, absl::string_view command);

// INVALID_ARGUMENT naming `part` unless `section` is "", "HEADER", "TEXT" or a
// body part number (1, 1.2, optionally with .MIME, .HEADER or .TEXT).
absl::Status ValidateImapSection(absl::string_view section);


class ImapSession {
 public:
  // Connects, reads the greeting, upgrades to TLS (STARTTLS when asked), and
  // reads the capabilities.
  static absl::StatusOr<std::unique_ptr<ImapSession>> Open(const ImapServer& server);
  // For tests: a session over any transport (already past TLS).
  static absl::StatusOr<std::unique_ptr<ImapSession>> OpenOver(std::unique_ptr<ImapTransport> transport,
                                                                const ImapServer& server);

  // UNAUTHENTICATED when the server refuses the token; PERMISSION_DENIED when
  // it accepts the token but refuses the mailbox (Exchange's "User is
  // authenticated but not connected"); UNAVAILABLE for temporary failures.
  absl::Status Authenticate(absl::string_view user, const Secret& token, SaslMechanism mechanism);

  absl::StatusOr<std::vector<ImapFolder>> ListFolders();
  absl::StatusOr<ImapFolderStatus> Status(absl::string_view folder);
  // EXAMINE (read-only select). NOT_FOUND for a missing folder.
  absl::StatusOr<ImapSelected> Examine(absl::string_view folder);
  // UID SEARCH in the selected folder with criteria from ImapSearchBuilder.
  absl::StatusOr<std::vector<uint32_t>> UidSearch(const ImapSearchBuilder& criteria);
  absl::StatusOr<std::vector<ImapMessageSummary>> FetchSummaries(const std::vector<uint32_t>& uids);
  // UID FETCH uid (UID FLAGS INTERNALDATE BODY.PEEK[section]) in one round
  // trip: calls `start` with the message's UID, flags and internal date and
  // the section's size once they are known, then `sink` with chunks of
  // `chunk_size` bytes (the last one shorter) as they arrive; returns the
  // total size. NOT_FOUND when there is no such message. An error from
  // `start` or `sink` ends the fetch (and the session, whose connection still
  // carries the rest).
  using FetchStart = std::function<absl::Status(const ImapMessageSummary& message, uint64_t size)>;
  absl::StatusOr<uint64_t> FetchSection(uint32_t uid, absl::string_view section, size_t chunk_size,
                                        const std::function<absl::Status(absl::string_view)>& sink,
                                        const FetchStart& start = nullptr);
  // The same for many messages in one round trip (UID FETCH set): `start`
  // then `sink` for each message, in the order the server sends them (UIDs
  // that do not exist are skipped). Returns how many messages came.
  // INVALID_ARGUMENT for an empty list or more than kMaxUidsPerFetch UIDs.
  static constexpr size_t kMaxUidsPerFetch = 1000;
  absl::StatusOr<uint64_t> FetchSections(const std::vector<uint32_t>& uids, absl::string_view section,
                                         size_t chunk_size, const std::function<absl::Status(absl::string_view)>& sink,
                                         const FetchStart& start);
  // EXAMINE unless `folder` is already selected in this session.
  absl::StatusOr<ImapSelected> Select(absl::string_view folder);
  // Flags, internal date and size of one message; NOT_FOUND when missing.
  absl::StatusOr<ImapMessageSummary> FetchSummary(uint32_t uid);
  absl::Status Noop();
  absl::Status Logout();
  // IDLE (RFC 2177) in the selected folder. `on_update` gets every untagged
  // response the server sends meanwhile (EXISTS, EXPUNGE, FETCH, OK
  // keep-alives) and returns true to end the IDLE early. The IDLE also ends
  // after `max_wait` or when `wake_fd` (an eventfd, -1 for none) becomes
  // readable; then DONE is sent and the reply read (its untagged responses
  // go to `on_update` too). Says why it ended. FAILED_PRECONDITION when the
  // server does not offer IDLE; UNAVAILABLE when the connection fails or the
  // server says BYE.
  enum class IdleEnd { kAsked, kTimedOut, kWoken, kByServer };
  absl::StatusOr<IdleEnd> Idle(absl::Duration max_wait, int wake_fd,
                               const std::function<bool(const ImapResponse&)>& on_update);
  // Gets the untagged EXISTS and EXPUNGE responses that come with any other
  // command's reply (a server reports changes to the selected folder
  // whenever it may), so that a caller keeping sequence numbers in step
  // misses none.
  void set_on_unsolicited(std::function<void(const ImapResponse&)> observer) { on_unsolicited_ = std::move(observer); }

  const std::set<std::string>& capabilities() const { return capabilities_; }
  const std::optional<ImapSelected>& selected() const { return selected_; }
  // False once the connection failed or the server said BYE.
  bool usable() const { return usable_; }

 private:
  explicit ImapSession(std::unique_ptr<ImapTransport> transport, ImapServer server)
      : transport_(std::move(transport)), server_(std::move(server)) {}

  struct Reply {
    ImapResponse tagged;
    std::vector<ImapResponse> untagged;
  };
  // One whole response from the server. Literals longer than the streaming
  // threshold go to `literal_sink` (when set) and appear as empty strings.
  absl::StatusOr<ImapResponse> ReadResponse(
      const std::function<absl::Status(absl::string_view)>* literal_sink = nullptr, size_t chunk_size = 0,
      const std::function<absl::Status(uint64_t, absl::string_view)>* literal_start = nullptr);
  absl::StatusOr<std::string> ReadLine();
  absl::Status Fill();
  // Sends a command with a fresh tag and collects the responses until the
  // tagged one. `parts` alternate: command text, then literal data to send
  // after the server's continuation ("{n}" is appended to the text before
  // it), then text again.
  absl::StatusOr<Reply> Run(const std::vector<std::string>& parts,
                            const std::function<absl::Status(absl::string_view)>* literal_sink = nullptr,
                            size_t chunk_size = 0,
                            const std::function<absl::Status(uint64_t, absl::string_view)>* literal_start = nullptr);
  // A mailbox argument: the UTF-8 name in modified UTF-7, quoted.
  static absl::StatusOr<std::string> MailboxArg(absl::string_view folder_utf8);
  absl::Status ReadCapabilities(const ImapResponse& greeting);
  // Hands EXISTS and EXPUNGE responses to on_unsolicited_.
  void Observe(const ImapResponse& response);
  absl::Status Fail(absl::Status status);

  std::unique_ptr<ImapTransport> transport_;
  ImapServer server_;
  std::string buffer_;
  size_t offset_ = 0;
  uint64_t next_tag_ = 1;
  std::set<std::string> capabilities_;
  std::optional<ImapSelected> selected_;
  bool usable_ = true;
  std::function<void(const ImapResponse&)> on_unsolicited_;
};

// Builds UID SEARCH criteria from typed inputs; strings are validated and
// quoted, or sent as literals with CHARSET UTF-8 when they are 8-bit.
class ImapSearchBuilder {
 public:
  ImapSearchBuilder& Since(absl::Time t);
  ImapSearchBuilder& Before(absl::Time t);
  absl::Status From(absl::string_view s);
  absl::Status To(absl::string_view s);
  absl::Status Subject(absl::string_view s);
  absl::Status Header(absl::string_view name, absl::string_view value);
  ImapSearchBuilder& Unseen();
  ImapSearchBuilder& UidRange(uint32_t first, uint32_t last);  // last 0 = *
  // The command parts after "UID SEARCH " (see ImapSession::Run): "ALL"
  // when nothing was added.
  std::vector<std::string> Build() const;

 private:
  absl::Status Text(absl::string_view key, absl::string_view field, absl::string_view value);
  void Append(absl::string_view key);
  // Alternating text and literal data, as for Run().
  std::vector<std::string> parts_ = {""};
  bool utf8_ = false;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IMAP_IMAP_SESSION_H_
