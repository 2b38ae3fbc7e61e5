// The one-message methods' threads (GetMessage, FetchMessage) as the broker
// runs them when the configuration does not say (mail.get_message_threads,
// mail.fetch_message_threads, mail.get_message_threads_poll): one place for
// MailServiceOptions and for the benchmarks that describe them.
#ifndef TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_
#define TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_

namespace tokenbroker {

inline constexpr int kDefaultGetMessageThreads = 8;
// FetchMessage stays on the stream workers by default: on its own threads
// one message per call is faster, but a long stream waits now and then for
// a write's completion (docs/benchmarks.md, "FetchMessage on threads of its
// own").
inline constexpr int kDefaultFetchMessageThreads = 0;
// For both methods' threads.
inline constexpr bool kDefaultGetMessageThreadsPoll = false;

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_
