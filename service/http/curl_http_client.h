// HttpClient over libcurl: TLS verification always on (a CA bundle can be
// configured), connect and total timeouts, a cap on the response size,
// connections reused across requests (a small pool of easy handles), proxies
// from HTTPS_PROXY / NO_PROXY as libcurl reads them. No verbose output ever
// (it would print secrets). Thread-safe.
#ifndef TOKENBROKER_SERVICE_HTTP_CURL_HTTP_CLIENT_H_
#define TOKENBROKER_SERVICE_HTTP_CURL_HTTP_CLIENT_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/http/http_client.h"

namespace tokenbroker {

struct CurlOptions {
  // PEM bundle of trusted CAs; empty: the system's.
  std::string ca_file;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(20);
  size_t max_response_bytes = 1 << 20;
};

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(CurlOptions options);
  ~CurlHttpClient() override;
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override;

 private:
  void* Acquire();
  void Release(void* handle);

  const CurlOptions options_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_HTTP_CURL_HTTP_CLIENT_H_
