#include "service/imap/imap_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

bool IsIpAddress(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpTlsTransport>> TcpTlsTransport::Connect(const std::string& host, int port,
                                                                          absl::Duration connect_timeout,
                                                                          absl::Duration io_timeout) {
  const std::string peer = absl::StrCat(host, ":", port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (gai != 0) return absl::UnavailableError(absl::StrCat("IMAP server ", peer, ": ", gai_strerror(gai)));
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(connect_timeout))) == 1 ? 0 : -1;
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
        errno = err;
        rc = -1;
      } else if (rc != 0) {
        errno = ETIMEDOUT;
      }
    }
    if (rc != 0) {
      last_error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to IMAP server ", peer, ": ", last_error));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(io_timeout)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(io_timeout) % 1'000'000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A connection that died without a word (a network drop) is noticed in
  // about 90 s even while it idles (a mailbox watch in IDLE).
  int idle = 60, interval = 10, count = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  return std::unique_ptr<TcpTlsTransport>(new TcpTlsTransport(fd, peer));
}

TcpTlsTransport::~TcpTlsTransport() {
  if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);
    SSL_free(ssl_);
  }
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  close(fd_);
}

absl::Status TcpTlsTransport::StartTls(const std::string& host, const std::string& ca_file) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) return absl::InternalError(OpenSslError());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  const int loaded = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx_)
                                     : SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
  if (loaded != 1) {
    return absl::FailedPreconditionError(absl::StrCat("cannot load the IMAP CA file \"", ca_file, "\": ",
                                                      OpenSslError()));
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  // Read whatever the socket holds, not a record's header and then its body:
  // a fetched message arrives in many records, each two reads otherwise.
  SSL_set_read_ahead(ssl_, 1);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  if (IsIpAddress(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  if (SSL_connect(ssl_) != 1) {
    const long verify = SSL_get_verify_result(ssl_);
    const std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : OpenSslError();
    return absl::UnavailableError(absl::StrCat("TLS with IMAP server ", peer_, " failed: ", why));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TcpTlsTransport::Read(char* buffer, size_t size) {
  if (ssl_ != nullptr) {
    const int n = SSL_read(ssl_, buffer, static_cast<int>(std::min<size_t>(size, 1 << 30)));
    if (n > 0) return static_cast<size_t>(n);
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_SYSCALL && errno == 0) return 0;
    return absl::UnavailableError(absl::StrCat("reading from IMAP server ", peer_, " failed: ",
                                               err == SSL_ERROR_SYSCALL ? std::strerror(errno) : OpenSslError()));
  }
  while (true) {
    const ssize_t n = read(fd_, buffer, size);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return absl::UnavailableError(absl::StrCat("reading from IMAP server ", peer_, " failed: ",
                                               errno == EAGAIN ? "timed out" : std::strerror(errno)));
  }
}

absl::StatusOr<ImapTransport::Wait> TcpTlsTransport::WaitReadable(absl::Duration timeout, int wake_fd) {
  // Bytes TLS already read (decrypted or not, with read-ahead) are not on the
  // socket any more.
  if (ssl_ != nullptr && SSL_has_pending(ssl_) == 1) return Wait::kReadable;
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const int count = wake_fd >= 0 ? 2 : 1;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const int64_t ms =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(deadline - absl::Now(), absl::Milliseconds(1))));
    const int rc = poll(fds, count, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      return absl::UnavailableError(absl::StrCat("waiting for IMAP server ", peer_, " failed: ", std::strerror(errno)));
    }
    if (rc == 0) return Wait::kTimedOut;
    if (count == 2 && (fds[1].revents & POLLIN) != 0) return Wait::kWoken;
    return Wait::kReadable;  // data, or an error or hang-up Read will report
  }
}

absl::Status TcpTlsTransport::Write(absl::string_view data) {
  while (!data.empty()) {
    ssize_t n;
    if (ssl_ != nullptr) {
      n = SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
      if (n <= 0) {
        return absl::UnavailableError(absl::StrCat("writing to IMAP server ", peer_, " failed: ", OpenSslError()));
      }
    } else {
      n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return absl::UnavailableError(absl::StrCat("writing to IMAP server ", peer_, " failed: ",
                                                   std::strerror(errno)));
      }
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace tokenbroker
