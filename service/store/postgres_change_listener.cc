#include "service/store/postgres_change_listener.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

std::string ErrorOf(PGconn* conn) {
  std::string msg = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresChangeListener>> PostgresChangeListener::Start(
    const Secret& dsn, ChangeCallback on_change, ConnectionCallback on_connection) {
  std::unique_ptr<PostgresChangeListener> listener(
      new PostgresChangeListener(dsn.Clone(), std::move(on_change), std::move(on_connection)));
  if (listener->stop_fd_ < 0) return absl::InternalError("eventfd failed");
  if (std::string error = listener->Connect(); !error.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen for changes on PostgreSQL: ", error));
  }
  listener->thread_ = std::thread([l = listener.get()] { l->Run(); });
  return listener;
}

PostgresChangeListener::PostgresChangeListener(Secret dsn, ChangeCallback on_change,
                                               ConnectionCallback on_connection)
    : dsn_(std::move(dsn)),
      on_change_(std::move(on_change)),
      on_connection_(std::move(on_connection)),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

PostgresChangeListener::~PostgresChangeListener() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (conn_ != nullptr) PQfinish(conn_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

std::string PostgresChangeListener::Connect() {
  if (conn_ != nullptr) PQfinish(conn_);
  std::string conninfo(dsn_.Reveal());
  conn_ = PQconnectdb(conninfo.c_str());
  WipeString(conninfo);
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  if (PQstatus(conn_) != CONNECTION_OK) return ErrorOf(conn_);
  PGresult* res = PQexec(conn_, absl::StrCat("LISTEN ", kChangesChannel).c_str());
  const bool ok = res != nullptr && PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  if (!ok) return ErrorOf(conn_);
  return "";
}

bool PostgresChangeListener::Wait(int fd, int timeout_ms) {
  pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
  const int n = poll(fds, fd >= 0 ? 2 : 1, timeout_ms);
  return !(n > 0 && (fds[0].revents & POLLIN));
}

void PostgresChangeListener::Run() {
  int backoff_ms = 1000;
  bool connected = true;
  std::string lost;  // why the connection went
  while (true) {
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      if (connected) {
        connected = false;
        if (lost.empty()) lost = ErrorOf(conn_);
        if (on_connection_) on_connection_(false, lost);
      }
      // Reconnect with back-off; "*" once listening again.
      if (!Wait(-1, backoff_ms)) return;
      backoff_ms = std::min(backoff_ms * 2, 30000);
      if (!Connect().empty()) continue;
      backoff_ms = 1000;
      connected = true;
      lost.clear();
      if (on_connection_) on_connection_(true, "");
      on_change_("*");
      continue;
    }
    if (!Wait(PQsocket(conn_), -1)) return;
    if (PQconsumeInput(conn_) == 0) {
      lost = ErrorOf(conn_);
      PQfinish(conn_);
      conn_ = nullptr;
      continue;
    }
    while (PGnotify* n = PQnotifies(conn_)) {
      on_change_(n->extra != nullptr ? n->extra : "");
      PQfreemem(n);
    }
  }
}

}  // namespace tokenbroker
