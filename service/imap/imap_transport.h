// ImapTransport: the byte stream under an IMAP session. TcpTlsTransport is the
// real one: a TCP connection with deadlines that becomes TLS (implicit on
// 993, or after STARTTLS), verifying the server's certificate chain and host
// name (or IP address) always.
#ifndef TOKENBROKER_SERVICE_IMAP_IMAP_TRANSPORT_H_
#define TOKENBROKER_SERVICE_IMAP_IMAP_TRANSPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace tokenbroker {

class ImapTransport {
 public:
  virtual ~ImapTransport() = default;
  // Up to `size` bytes; 0 when the peer closed. UNAVAILABLE on errors and
  // timeouts.
  virtual absl::StatusOr<size_t> Read(char* buffer, size_t size) = 0;
  virtual absl::Status Write(absl::string_view data) = 0;
  // Waits up to `timeout` until Read would return without blocking, or until
  // `wake_fd` (an eventfd; -1 for none) becomes readable. kReadable,
  // kTimedOut or kWoken; UNAVAILABLE on errors. The default (test
  // transports, whose reads never block) is always readable.
  enum class Wait { kReadable, kTimedOut, kWoken };
  virtual absl::StatusOr<Wait> WaitReadable(absl::Duration timeout, int wake_fd) {
    (void)timeout;
    (void)wake_fd;
    return Wait::kReadable;
  }
};

class TcpTlsTransport final : public ImapTransport {
 public:
  ~TcpTlsTransport() override;
  // Connects to host:port; `io_timeout` bounds every later read and write.
  static absl::StatusOr<std::unique_ptr<TcpTlsTransport>> Connect(const std::string& host, int port,
                                                                  absl::Duration connect_timeout,
                                                                  absl::Duration io_timeout);
  // TLS handshake; verifies the chain against `ca_file` (system CAs when
  // empty) and that the certificate names `host`.
  absl::Status StartTls(const std::string& host, const std::string& ca_file);
  bool tls() const { return ssl_ != nullptr; }

  absl::StatusOr<size_t> Read(char* buffer, size_t size) override;
  absl::Status Write(absl::string_view data) override;
  absl::StatusOr<Wait> WaitReadable(absl::Duration timeout, int wake_fd) override;

 private:
  explicit TcpTlsTransport(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  int fd_;
  std::string peer_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_IMAP_IMAP_TRANSPORT_H_
