// HttpClient: the broker's only way to talk HTTP (identity providers). An
// interface, so that tests can substitute a fake; CurlHttpClient is the real
// one.
#ifndef TOKENBROKER_SERVICE_HTTP_HTTP_CLIENT_H_
#define TOKENBROKER_SERVICE_HTTP_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tokenbroker {

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  // Header names as sent; values may be secrets (Authorization): never log them.
  std::vector<std::pair<std::string, std::string>> headers;
  // The body; for token requests it holds secrets: never log it.
  std::string body;
};

struct HttpResponse {
  int status = 0;
  // Lower-case names.
  std::map<std::string, std::string> headers;
  std::string body;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // UNAVAILABLE for connection, TLS and timeout failures (the message names the
  // host, never the body); any HTTP status is a response, not an error.
  virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

// application/x-www-form-urlencoded encoding of `fields`.
std::string FormEncode(const std::vector<std::pair<std::string, std::string>>& fields);
std::string UrlEncode(absl::string_view s);

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_HTTP_HTTP_CLIENT_H_
