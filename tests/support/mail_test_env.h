// What the mail end-to-end suites run against: the Microsoft-shaped identity
// provider over HTTPS, a real Dovecot that checks every token with it by
// introspection, and tokenbrokerd with an app whose IMAP server is that
// Dovecot. Each suite makes one in SetUpTestSuite: StartServers, seed the
// mailboxes, StartDaemon, then ImportGrant.
#ifndef TOKENBROKER_TESTS_SUPPORT_MAIL_TEST_ENV_H_
#define TOKENBROKER_TESTS_SUPPORT_MAIL_TEST_ENV_H_

#include <memory>
#include <string>
#include <vector>

#include "tests/support/daemon.h"
#include "tests/support/dovecot_server.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"

namespace tokenbroker::testing {

class MailTestEnv {
 public:
  static constexpr char kTenant[] = "contoso.onmicrosoft.com";
  static constexpr char kApp[] = "contoso";

  // `secret`: the app's client secret (suites check it never leaks).
  explicit MailTestEnv(std::string secret);
  ~MailTestEnv();

  // The identity provider and Dovecot; false (with a test failure) when
  // either did not start.
  bool StartServers();
  // tokenbrokerd with `mail_keys` (YAML lines under `mail:`, each indented
  // by two spaces) and `extra` (more top-level YAML), and the app created.
  // AddressSanitizer's quarantine is kept small in the daemon, so that
  // memory growth shows in the suites' flat-memory checks (it still
  // catches use after free of recently freed memory).
  bool StartDaemon(const std::string& mail_keys = "", const std::string& extra = "");
  // A delegated grant of `mailbox` with a refresh token the provider knows.
  void ImportGrant(const std::string& grant, const std::string& mailbox);

  CommandResult Ctl(const std::vector<std::string>& args) const;
  // Ctl, with a test failure unless it exits 0.
  CommandResult MustCtl(const std::vector<std::string>& args) const;
  // The /metrics lines that start with `prefix`.
  std::string Metric(const std::string& prefix) const;
  // The value of one series (its name and labels exactly); -1 when absent.
  double MetricValue(const std::string& series) const;

  TempDir& dir() { return dir_; }
  FakeMicrosoft& idp() { return idp_; }
  DovecotServer& dovecot() { return *dovecot_; }
  RunningDaemon& daemon() { return daemon_; }
  // The identity provider's host:port (an app's --authority-host).
  const std::string& authority() const { return authority_; }
  const std::string& secret() const { return secret_; }

 private:
  const std::string secret_;
  TempDir dir_;
  FakeMicrosoft idp_;
  CertificateFiles tls_;
  HttpsServer https_;
  std::string authority_;
  std::unique_ptr<DovecotServer> dovecot_;
  RunningDaemon daemon_;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_MAIL_TEST_ENV_H_
