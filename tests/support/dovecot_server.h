// A real Dovecot (Debian's dovecot-imapd) for IMAP tests: its own directory,
// configuration and free ports on 127.0.0.1, IMAP with STARTTLS and implicit
// TLS under a certificate the test makes, and SASL XOAUTH2/OAUTHBEARER checked
// by `passdb oauth2` introspecting each token at the test's identity provider
// (RFC 7662). Mailboxes are seeded as Maildir files before or while it runs.
// As root it runs as `nobody`. One instance per test fixture: starting takes
// a fraction of a second, stopping about two.
#ifndef TOKENBROKER_TESTS_SUPPORT_DOVECOT_SERVER_H_
#define TOKENBROKER_TESTS_SUPPORT_DOVECOT_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/support/test_support.h"

namespace tokenbroker::testing {

struct SeedMessage {
  std::string folder;  // UTF-8, "/"-separated; "INBOX" for the inbox
  std::string rfc822;  // the whole message, CRLF line ends
  bool seen = false;
};

class DovecotServer {
 public:
  ~DovecotServer();
  // `introspection_url`: the identity provider's introspection endpoint;
  // `idp_ca_file`: the CA that signed its certificate.
  static absl::StatusOr<std::unique_ptr<DovecotServer>> Start(const std::string& introspection_url,
                                                             const std::string& idp_ca_file);

  int imap_port() const { return imap_port_; }    // STARTTLS
  int imaps_port() const { return imaps_port_; }  // implicit TLS
  // The certificate (a CA for itself) IMAP clients must trust; its names are
  // 127.0.0.1 and localhost.
  const std::string& ca_file() const { return certificate_; }
  // Writes messages into `user`'s mailbox (folders are created).
  absl::Status Seed(const std::string& user, const std::vector<SeedMessage>& messages);
  // Disconnects every IMAP session of `user` (doveadm kick), as a server
  // restart or network failure would.
  absl::Status Kick(const std::string& user);
  // Delivers a message into `user`'s `folder` the way mail arrives while
  // the server runs (doveadm save): IMAP sessions idling there hear of it.
  absl::Status Deliver(const std::string& user, const std::string& folder, const std::string& rfc822);
  // doveadm with `args` after "-c CONFIG" (expunge, flags, mailbox update,
  // ...): exit 0 or INTERNAL with its output.
  absl::Status Doveadm(const std::vector<std::string>& args);
  // Kills (SIGKILL) every IMAP process, mid-session: the clients' connections
  // drop without a BYE; the server itself keeps running.
  absl::Status KillImapProcesses();
  // Kills the whole server (SIGKILL to the master; its processes follow)
  // and starts it again on the same ports and mail, as a crash and restart
  // of the machine's IMAP service would. `while_down` runs in between (mail
  // delivered while the server is down). The server greets again before it
  // returns.
  absl::Status Restart(const std::function<absl::Status()>& while_down = nullptr);
  // Dovecot's log so far.
  std::string Log() const;
  // The master process; every other Dovecot process (imap-login, imap,
  // auth, ...) is its child.
  pid_t pid() const { return process_->pid(); }

 private:
  DovecotServer() = default;
  std::string dir_;
  std::string certificate_;
  int imap_port_ = 0;
  int imaps_port_ = 0;
  int uid_ = -1;
  int gid_ = -1;
  std::unique_ptr<Subprocess> process_;
  int seeded_ = 0;
};

}  // namespace tokenbroker::testing

#endif  // TOKENBROKER_TESTS_SUPPORT_DOVECOT_SERVER_H_
