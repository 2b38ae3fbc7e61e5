// An IMAP server inside a transport, for tests: subclasses answer each
// command in Write() by appending to pending_, which Read() hands out (and
// UNAVAILABLE once it is empty, as a closed connection).
#ifndef TOKENBROKER_TESTS_SUPPORT_IN_MEMORY_IMAP_TRANSPORT_H_
#define TOKENBROKER_TESTS_SUPPORT_IN_MEMORY_IMAP_TRANSPORT_H_

#include <algorithm>
#include <string>

#include "service/imap/imap_transport.h"

namespace tokenbroker::testing {

class InMemoryImapTransport : public ImapTransport {
 public:
  explicit InMemoryImapTransport(std::string greeting) : pending_(std::move(greeting)) {}
  absl::StatusOr<size_t> Read(char* buffer, size_t size) override {
    if (pending_.empty()) return absl::UnavailableError("the test server has nothing to say");
    const size_t n = std::min(size, pending_.size());
    pending_.copy(buffer, n);
    pending_.erase(0, n);
    return n;
  }

 protected:
  std::string pending_;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_IN_MEMORY_IMAP_TRANSPORT_H_
