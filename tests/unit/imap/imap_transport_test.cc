// TcpTlsTransport against a TLS server in the test (real sockets, real TLS):
// what TLS has already read off the socket counts as readable.
#include "service/imap/imap_transport.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace tokenbroker {
namespace {

TEST(TcpTlsTransportTest, RecordsReadAheadOffTheSocketAreReadable) {
  testing::TempDir dir;
  const testing::CertificateFiles cert =
      testing::MakeSelfSignedCertificate(dir, "imap", 30, "rsa", "IP:127.0.0.1");
  int port = 0;
  const int listen_fd = testing::ListenOnLoopback(0, &port);
  ASSERT_GE(listen_fd, 0);
  absl::Notification sent, done;
  // The server sends two TLS records in one TCP write, so that one read of
  // the client's takes both off the socket.
  std::thread server([&] {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_file(ctx, cert.certificate.c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, cert.private_key.c_str(), SSL_FILETYPE_PEM);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      BIO* records = BIO_new(BIO_s_mem());
      SSL_set0_wbio(ssl, records);  // the SSL owns it now
      SSL_write(ssl, "* 1 EXISTS\r\n", 12);
      SSL_write(ssl, "* 2 EXISTS\r\n", 12);
      char* bytes = nullptr;
      const long size = BIO_get_mem_data(records, &bytes);
      EXPECT_EQ(send(fd, bytes, static_cast<size_t>(size), MSG_NOSIGNAL), size);
    }
    sent.Notify();
    done.WaitForNotification();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
  });

  absl::StatusOr<std::unique_ptr<TcpTlsTransport>> transport =
      TcpTlsTransport::Connect("127.0.0.1", port, absl::Seconds(10), absl::Seconds(10));
  ASSERT_TRUE(transport.ok()) << transport.status();
  ASSERT_TRUE((*transport)->StartTls("127.0.0.1", cert.certificate).ok());
  sent.WaitForNotification();
  char buffer[4096];
  absl::StatusOr<size_t> n = (*transport)->Read(buffer, sizeof buffer);
  ASSERT_TRUE(n.ok()) << n.status();
  // One record per read: the second is still in TLS's buffer, not on the
  // socket, and a wait for the socket alone would never end.
  ASSERT_EQ(std::string(buffer, *n), "* 1 EXISTS\r\n");
  absl::StatusOr<ImapTransport::Wait> wait = (*transport)->WaitReadable(absl::Seconds(5), -1);
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_EQ(*wait, ImapTransport::Wait::kReadable);
  n = (*transport)->Read(buffer, sizeof buffer);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buffer, *n), "* 2 EXISTS\r\n");
  done.Notify();
  server.join();
  close(listen_fd);
}

}  // namespace
}  // namespace tokenbroker
