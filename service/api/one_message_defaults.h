// The one-message methods' threads (GetMessage, FetchMessage) as the broker
// runs them when the configuration does not say (mail.get_message_threads,
// mail.fetch_message_threads, mail.get_message_threads_poll): one place for
// MailServiceOptions and for the benchmarks that describe them.
#ifndef TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_
#define TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_

namespace tokenbroker {

inline constexpr int kDefaultGetMessageThreads = 8;
// FetchMessage on threads of its own too since 2026-12-05: one message per
// call is faster there and long streams as fast as on the stream workers
// (docs/benchmarks.md, "FetchMessage on threads of its own").
inline constexpr int kDefaultFetchMessageThreads = 8;
// For both methods' threads.
inline constexpr bool kDefaultGetMessageThreadsPoll = false;

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_ONE_MESSAGE_DEFAULTS_H_
