// The IMAP4rev1 response parser (RFC 3501 section 7 and 9): bytes in,
// structured responses out. Pure and allocation-bounded: it never reads past
// the input, literals must be complete in it, and nesting is limited. The
// reader (imap_reader.h) assembles one response's bytes, literals included,
// from the connection and hands them here; a fuzzer feeds it anything.
#ifndef TOKENBROKER_SERVICE_IMAP_IMAP_PARSER_H_
#define TOKENBROKER_SERVICE_IMAP_IMAP_PARSER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenbroker {

// One value: an atom (including numbers, flags like \Seen and fetch items like
// BODY[HEADER.FIELDS (FROM)]<0>), a string (quoted or literal), NIL, or a
// parenthesized list.
struct ImapValue {
  enum class Kind { kAtom, kString, kNil, kList };
  Kind kind = Kind::kNil;
  std::string text;             // atoms and strings
  std::vector<ImapValue> list;  // lists
  // Set by the reader for a literal it streamed elsewhere instead of keeping
  // (text is then empty; size is the literal's length).
  bool streamed = false;
  uint64_t size = 0;

  bool IsAtom(absl::string_view name) const;  // case-insensitive
  bool IsString() const { return kind == Kind::kString || kind == Kind::kAtom; }
  // An atom that is a number (RFC 3501 number / nz-number).
  std::optional<uint64_t> Number() const;
  // Strings and atoms: the text; NIL: empty.
  const std::string& Str() const { return text; }
};

struct ImapResponse {
  enum class Type { kTagged, kUntagged, kContinuation };
  Type type = Type::kUntagged;
  std::string tag;  // tagged responses
  // Status responses (OK, NO, BAD, PREAUTH, BYE), upper case; empty for data.
  std::string status;
  // The response code in brackets, upper case ("UIDVALIDITY", "TRYCREATE",
  // "AUTHENTICATIONFAILED"), with its arguments.
  std::string code;
  std::vector<ImapValue> code_args;
  // Human-readable text of status responses and continuations.
  std::string text;
  // Data responses: the leading number ("* 12 FETCH", "* 3 EXISTS"), if any.
  std::optional<uint32_t> number;
  // Data responses: the name, upper case ("LIST", "FETCH", "SEARCH", ...).
  std::string name;
  // Data responses: everything after the name.
  std::vector<ImapValue> values;
};

// Parses one complete response: its line(s) with CRLF and any literals
// ({n}CRLF followed by n bytes) inline. INVALID_ARGUMENT describing the first
// error and its offset; never crashes on any input.
absl::StatusOr<ImapResponse> ParseImapResponse(absl::string_view raw);

// The fetch attributes of a FETCH response ("UID", "FLAGS", "BODY[]", ...),
// upper-cased names paired with their values. Empty when not a FETCH list.
std::vector<std::pair<std::string, const ImapValue*>> FetchAttributes(const ImapResponse& response);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IMAP_IMAP_PARSER_H_
