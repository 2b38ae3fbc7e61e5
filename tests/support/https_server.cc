#include "tests/support/https_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {

HttpsServer::~HttpsServer() { Stop(); }

absl::Status HttpsServer::Start(const std::string& certificate_file, const std::string& key_file, int port) {
  // A client that dies mid-request (a killed broker) must not kill the test
  // with SIGPIPE when its answer is written: the write fails instead.
  signal(SIGPIPE, SIG_IGN);
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx_, certificate_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InternalError("cannot load the test server's certificate");
  }
  listen_fd_ = ListenOnLoopback(port, &port_);
  if (listen_fd_ < 0) return absl::InternalError(absl::StrCat("cannot listen on port ", port));
  stopping_ = false;
  thread_ = std::thread([this] { Serve(); });
  return absl::OkStatus();
}

void HttpsServer::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  thread_.join();
  close(listen_fd_);
  listen_fd_ = -1;
  SSL_CTX_free(ctx_);
  ctx_ = nullptr;
}

void HttpsServer::Serve() {
  while (!stopping_) {
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) break;
    Handle(fd);
  }
}

void HttpsServer::Handle(int fd) {
  SSL* ssl = SSL_new(ctx_);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    std::string in;
    char buf[4096];
    size_t header_end = std::string::npos;
    size_t body_length = 0;
    while (true) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos && (header_end = in.find("\r\n\r\n")) != std::string::npos) {
        for (absl::string_view line : absl::StrSplit(in.substr(0, header_end), "\r\n")) {
          if (absl::StartsWithIgnoreCase(line, "content-length:")) {
            (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &body_length);
          }
        }
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + body_length) break;
    }
    if (header_end != std::string::npos) {
      HttpRequest request;
      std::vector<std::string> first = absl::StrSplit(in.substr(0, in.find("\r\n")), ' ');
      request.method = first.size() > 0 ? first[0] : "";
      std::string host = host_;
      for (absl::string_view line : absl::StrSplit(in.substr(0, header_end), "\r\n")) {
        if (absl::StartsWithIgnoreCase(line, "host:")) host = std::string(absl::StripAsciiWhitespace(line.substr(5)));
      }
      request.url = absl::StrCat("https://", host, first.size() > 1 ? first[1] : "/");
      request.body = in.substr(header_end + 4, body_length);
      absl::StatusOr<HttpResponse> response = handler_.Send(request);
      if (response.ok()) {
        std::string out = absl::StrCat("HTTP/1.1 ", response->status, " X\r\nContent-Length: ", response->body.size(),
                                       "\r\nConnection: close\r\n");
        for (const auto& [name, value] : response->headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
        absl::StrAppend(&out, "\r\n", response->body);
        SSL_write(ssl, out.data(), static_cast<int>(out.size()));
      }
    }
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
}

}  // namespace tokenbroker::testing
