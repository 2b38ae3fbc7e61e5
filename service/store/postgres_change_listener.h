// PostgresChangeListener: hears what other replicas changed. It LISTENs on
// the `tokenbroker_changes` channel on a connection of its own (never one of
// the pool's) and calls `on_change` with each notification's payload
// ("grant:ID", "app:ID", "token:ID"; see CredentialStore::PublishChange).
//
// PostgreSQL keeps nothing for a listener that was disconnected, so after
// every reconnect `on_change` gets "*": whatever was cached may have changed
// meanwhile and must be re-read. A lost connection is retried with back-off
// (1 s doubling to 30 s); `on_connection` tells each loss and recovery.
// Callbacks run on the listener's own thread and must be quick.
#ifndef TOKENBROKER_SERVICE_STORE_POSTGRES_CHANGE_LISTENER_H_
#define TOKENBROKER_SERVICE_STORE_POSTGRES_CHANGE_LISTENER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/common/secret.h"

typedef struct pg_conn PGconn;

namespace tokenbroker {

inline constexpr char kChangesChannel[] = "tokenbroker_changes";

class PostgresChangeListener {
 public:
  using ChangeCallback = std::function<void(absl::string_view change)>;
  // `up` false: the connection was lost (`error` says why); true: listening
  // again.
  using ConnectionCallback = std::function<void(bool up, absl::string_view error)>;

  // Connects and LISTENs before returning (UNAVAILABLE when it cannot), then
  // listens on a thread until destroyed.
  static absl::StatusOr<std::unique_ptr<PostgresChangeListener>> Start(const Secret& dsn, ChangeCallback on_change,
                                                                       ConnectionCallback on_connection);
  ~PostgresChangeListener();

 private:
  PostgresChangeListener(Secret dsn, ChangeCallback on_change, ConnectionCallback on_connection);
  // Connects and LISTENs; "" or the reason it could not.
  std::string Connect();
  void Run();
  // Waits for the connection's socket (or the stop signal) up to `timeout`;
  // false when stopping.
  bool Wait(int fd, int timeout_ms);

  const Secret dsn_;
  ChangeCallback on_change_;
  ConnectionCallback on_connection_;
  PGconn* conn_ = nullptr;
  // Written once by the destructor to wake and stop the thread.
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_STORE_POSTGRES_CHANGE_LISTENER_H_
