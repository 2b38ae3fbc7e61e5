// libFuzzer target for the IMAP response parser and the text decoders that
// see server bytes. Built with clang by scripts/fuzz (see docs/development.md).
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/imap/imap_parser.h"
#include "service/imap/imap_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tokenbroker::ImapResponse> response = tokenbroker::ParseImapResponse(input);
  if (response.ok()) {
    for (const auto& [name, value] : tokenbroker::FetchAttributes(*response)) {
      (void)name;
      (void)value->Number();
    }
    for (const auto& value : response->values) {
      if (value.IsString()) (void)tokenbroker::DecodeMailboxName(value.Str());
    }
  }
  (void)tokenbroker::DecodeEncodedWords(input);
  (void)tokenbroker::DecodeMailboxName(input);
  return 0;
}
