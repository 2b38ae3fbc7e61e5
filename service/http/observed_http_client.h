// ObservedHttpClient: an HttpClient that reports each request's HTTP status
// (0 when there was no HTTP answer) to an observer and forwards everything
// else unchanged. The broker wraps each provider's client in one for the
// per-provider request metrics.
#ifndef TOKENBROKER_SERVICE_HTTP_OBSERVED_HTTP_CLIENT_H_
#define TOKENBROKER_SERVICE_HTTP_OBSERVED_HTTP_CLIENT_H_

#include <functional>

#include "service/http/http_client.h"

namespace tokenbroker {

class ObservedHttpClient final : public HttpClient {
 public:
  ObservedHttpClient(HttpClient& inner, std::function<void(int http_status)> observer)
      : inner_(inner), observer_(std::move(observer)) {}

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    absl::StatusOr<HttpResponse> response = inner_.Send(request);
    observer_(response.ok() ? response->status : 0);
    return response;
  }

 private:
  HttpClient& inner_;
  const std::function<void(int)> observer_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_HTTP_OBSERVED_HTTP_CLIENT_H_
