// A minimal HTTPS/1.1 server on 127.0.0.1 for tests: it answers each request
// with what an HttpClient (a fake provider) returns, one request per
// connection. When the handler fails (a fake that is "down"), the connection
// is closed without an answer, as a dead server's would be. Stop() and Start()
// again on the same port simulate an outage.
#ifndef TOKENBROKER_TESTS_SUPPORT_HTTPS_SERVER_H_
#define TOKENBROKER_TESTS_SUPPORT_HTTPS_SERVER_H_

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "service/http/http_client.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace tokenbroker::testing {

class HttpsServer {
 public:
  // `host` is what the handler sees in URLs ("https://" + host + path).
  HttpsServer(HttpClient& handler, std::string host) : handler_(handler), host_(std::move(host)) {}
  ~HttpsServer();
  // Listens on 127.0.0.1:`port` (0: a free one) with the PEM certificate and key.
  absl::Status Start(const std::string& certificate_file, const std::string& key_file, int port = 0);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();
  void Handle(int fd);

  HttpClient& handler_;
  std::string host_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_HTTPS_SERVER_H_
