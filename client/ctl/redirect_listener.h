// RedirectListener: the loopback HTTP listener that receives the browser's
// redirect at the end of the authorization-code flow (RFC 8252 section 7.3).
// It listens on a loopback address only, reads one request line at a time
// (bounded size and time), and answers with a small HTML page.
#ifndef TOKENBROKER_CLIENT_CTL_REDIRECT_LISTENER_H_
#define TOKENBROKER_CLIENT_CTL_REDIRECT_LISTENER_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tokenbroker::ctl {

struct RedirectRequest {
  std::string path;
  // The decoded query parameters (code, state, error, error_description).
  std::map<std::string, std::string> query;
};

class RedirectListener {
 public:
  ~RedirectListener();
  // `host` must be 127.0.0.1, ::1 or localhost; port 0 picks a free port.
  static absl::StatusOr<std::unique_ptr<RedirectListener>> Listen(const std::string& host, int port);
  int port() const { return port_; }
  // The next request (with a query), until `deadline` (DEADLINE_EXCEEDED).
  // The connection stays open for Respond().
  absl::StatusOr<RedirectRequest> Next(absl::Time deadline);
  // Answers the request Next() returned and closes its connection.
  void Respond(int status, const std::string& title, const std::string& text);

 private:
  RedirectListener(int fd, int port) : fd_(fd), port_(port) {}
  int fd_;
  int port_;
  int client_ = -1;
};

// The query parameters of a URL (or of "?a=b&c=d"), decoded.
std::map<std::string, std::string> ParseQuery(const std::string& url);

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_REDIRECT_LISTENER_H_
