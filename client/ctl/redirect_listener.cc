#include "client/ctl/redirect_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tokenbroker::ctl {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Decode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

int Remaining(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60'000));
}

}  // namespace

std::map<std::string, std::string> ParseQuery(const std::string& url) {
  std::map<std::string, std::string> out;
  const size_t q = url.find('?');
  if (q == std::string::npos) return out;
  std::string query = url.substr(q + 1);
  query = query.substr(0, query.find('#'));
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    out[Decode(pair.substr(0, eq))] = eq == absl::string_view::npos ? "" : Decode(pair.substr(eq + 1));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<RedirectListener>> RedirectListener::Listen(const std::string& host, int port) {
  const bool v6 = host == "::1" || host == "[::1]";
  if (!v6 && host != "127.0.0.1" && host != "localhost") {
    return absl::InvalidArgumentError("--listen: the redirect listener takes a loopback address only "
                                      "(127.0.0.1, [::1] or localhost)");
  }
  if (port < 0 || port > 65535) return absl::InvalidArgumentError("--listen: the port must be 0-65535");
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int rc;
  if (v6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0 || listen(fd, 8) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port, " for the redirect: ", why,
                                               "; choose another port with --listen"));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int actual = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                        : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<RedirectListener>(new RedirectListener(fd, actual));
}

RedirectListener::~RedirectListener() {
  if (client_ >= 0) close(client_);
  close(fd_);
}

absl::StatusOr<RedirectRequest> RedirectListener::Next(absl::Time deadline) {
  while (true) {
    if (client_ >= 0) Respond(404, "Not found", "This address only receives the sign-in redirect.");
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, Remaining(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError("no redirect from the browser arrived in time; start again");
      }
      continue;
    }
    client_ = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client_ < 0) continue;
    // Read up to the end of the request line; browsers send the whole request
    // at once.
    std::string request;
    char buf[2048];
    while (request.find("\r\n") == std::string::npos && request.size() < kMaxRequestBytes) {
      pollfd c{client_, POLLIN, 0};
      if (poll(&c, 1, std::min(Remaining(deadline), 5000)) <= 0) break;
      const ssize_t n = read(client_, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    const size_t eol = request.find("\r\n");
    if (eol == std::string::npos) {
      close(client_);
      client_ = -1;
      continue;
    }
    std::vector<std::string> parts = absl::StrSplit(request.substr(0, eol), ' ');
    if (parts.size() != 3 || parts[0] != "GET" || parts[1].find('?') == std::string::npos) continue;  // 404
    RedirectRequest r;
    r.path = parts[1].substr(0, parts[1].find('?'));
    r.query = ParseQuery(parts[1]);
    return r;
  }
}

void RedirectListener::Respond(int status, const std::string& title, const std::string& text) {
  if (client_ < 0) return;
  const std::string body = absl::StrCat("<!doctype html><html><head><meta charset=\"utf-8\"><title>", HtmlEscape(title),
                                        "</title></head><body><h1>", HtmlEscape(title), "</h1><p>", HtmlEscape(text),
                                        "</p></body></html>\n");
  const std::string reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : "Not Found";
  const std::string response =
      absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ",
                   body.size(), "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", body);
  size_t sent = 0;
  while (sent < response.size()) {
    const ssize_t n = send(client_, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  close(client_);
  client_ = -1;
}

}  // namespace tokenbroker::ctl
