// GetMessage's threads as the broker runs them when the configuration does
// not say (mail.get_message_threads, mail.get_message_threads_poll): one
// place for MailServiceOptions and for the benchmarks that describe them.
#ifndef TOKENBROKER_SERVICE_API_GET_MESSAGE_DEFAULTS_H_
#define TOKENBROKER_SERVICE_API_GET_MESSAGE_DEFAULTS_H_

namespace tokenbroker {

inline constexpr int kDefaultGetMessageThreads = 8;
inline constexpr bool kDefaultGetMessageThreadsPoll = false;

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_GET_MESSAGE_DEFAULTS_H_
