// How gtest (and so ctest's list) shows an OwnThreads queue kind: found by
// argument-dependent lookup, so in the enum's own namespace; inline, for
// every test file of OwnThreads' users.
#ifndef TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_PRINTER_H_
#define TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_PRINTER_H_

#include <ostream>

#include "service/api/own_threads.h"

namespace tokenbroker {

inline void PrintTo(OwnThreadQueues queues, std::ostream* out) {
  *out << (queues == OwnThreadQueues::kPolling ? "polling" : "non-polling");
}

}  // namespace tokenbroker

#endif  // TOKENBROKER_TESTS_UNIT_API_OWN_THREADS_PRINTER_H_
