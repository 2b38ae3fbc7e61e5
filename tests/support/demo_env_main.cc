// tokenbroker-demo-env: the outside world for scripts/demo, without a
// Microsoft tenant. Starts a Microsoft-shaped identity provider over HTTPS
// (the one the tests use) and a real Dovecot that checks tokens with it,
// seeds a mailbox for demo@contoso.com, writes the demo's credentials under
// DIR, prints one JSON line with the addresses, and runs until SIGINT/SIGTERM.
//   tokenbroker-demo-env DIR
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "service/common/clock.h"
#include "tests/support/dovecot_server.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"

using namespace tokenbroker;  // NOLINT

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenbroker-demo-env DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  testing::TempDir certs;
  testing::CertificateFiles tls = testing::MakeSelfSignedCertificate(certs, "idp", 30, "rsa", "IP:127.0.0.1");
  testing::FakeMicrosoft idp(SystemClock::Get());
  testing::HttpsServer https(idp, "");
  if (absl::Status s = https.Start(tls.certificate, tls.private_key); !s.ok()) {
    std::cerr << "identity provider: " << s << "\n";
    return 1;
  }
  const std::string authority = absl::StrCat("127.0.0.1:", https.port());
  idp.SetHost(authority);
  idp.RegisterApp("contoso.onmicrosoft.com", "demo-client", "demo-client-secret");
  idp.AddRefreshToken("demo-refresh-token", "demo@contoso.com");
  auto dovecot = testing::DovecotServer::Start(absl::StrCat("https://", authority, "/introspect"), tls.certificate);
  if (!dovecot.ok()) {
    std::cerr << "dovecot: " << dovecot.status() << "\n";
    return 1;
  }
  const std::string body =
      "From: Tokenbroker Demo <demo@contoso.com>\r\nTo: demo@contoso.com\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= "
      "from a mailbox you never gave a password to\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: "
      "<demo-1@contoso.com>\r\n\r\nThis message came to you through tokenbroker: IMAP with OAuth2, and you never "
      "saw a token.\r\n";
  absl::Status seeded = (*dovecot)->Seed(
      "demo@contoso.com",
      {{"INBOX", body, false},
       {"INBOX", "From: Bob <bob@example.com>\r\nSubject: Quarterly report\r\n\r\nNumbers.\r\n", true},
       {"Entwürfe", "Subject: Draft\r\n\r\nA draft.\r\n", false}});
  if (!seeded.ok()) {
    std::cerr << "seeding: " << seeded << "\n";
    return 1;
  }
  for (const auto& [name, contents] : {std::pair<std::string, std::string>{"idp-ca.pem", testing::ReadFile(tls.certificate)},
                                       {"client-secret", "demo-client-secret"},
                                       {"refresh-token", "demo-refresh-token"}}) {
    std::FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
    if (f == nullptr || std::fwrite(contents.data(), 1, contents.size(), f) != contents.size()) {
      std::cerr << "cannot write " << dir << "/" << name << "\n";
      return 1;
    }
    std::fclose(f);
  }
  std::cout << "{\"authority\": \"" << authority << "\", \"imap_port\": " << (*dovecot)->imaps_port()
            << ", \"imap_ca\": \"" << (*dovecot)->ca_file() << "\", \"idp_ca\": \"" << dir << "/idp-ca.pem\"}"
            << std::endl;
  int signal = 0;
  sigwait(&stop, &signal);
  https.Stop();
  return 0;
}
