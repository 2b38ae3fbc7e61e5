// Text encodings IMAP needs: modified UTF-7 mailbox names (RFC 3501 section
// 5.1.3), RFC 2047 encoded words in header values, and safe quoting of caller
// strings in commands.
#ifndef TOKENBROKER_SERVICE_IMAP_IMAP_TEXT_H_
#define TOKENBROKER_SERVICE_IMAP_IMAP_TEXT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenbroker {

// UTF-8 -> modified UTF-7. INVALID_ARGUMENT for bytes that are not UTF-8.
absl::StatusOr<std::string> EncodeMailboxName(absl::string_view utf8);
// Modified UTF-7 -> UTF-8. Names a server sends that are not valid modified
// UTF-7 (some servers send raw UTF-8) are returned as they are.
std::string DecodeMailboxName(absl::string_view mutf7);

// Decodes RFC 2047 encoded words (=?charset?B|Q?text?=) to UTF-8; whitespace
// between adjacent encoded words is dropped. Charsets through iconv; an
// unknown charset or a malformed word is left as it is.
std::string DecodeEncodedWords(absl::string_view header);

// INVALID_ARGUMENT naming `field` unless `value` is at most `max_bytes` and has
// no CR, LF or NUL: what may go into an IMAP command as a string.
absl::Status ValidateImapString(absl::string_view field, absl::string_view value, size_t max_bytes);
// An IMAP string for a command: quoted ("..." with \ and " escaped) when it is
// 7-bit, else a literal {n}CRLF... is needed, which the caller must send in
// two steps: returns nullopt-like empty when a literal is needed.
bool NeedsLiteral(absl::string_view value);
std::string Quote(absl::string_view value);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IMAP_IMAP_TEXT_H_
