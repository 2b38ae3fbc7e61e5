#include "tests/support/dovecot_server.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <utility>
#include <vector>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "service/common/status_macros.h"
#include "service/imap/imap_text.h"

namespace tokenbroker::testing {
namespace {

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

void ChownTree(const std::string& root, int uid, int gid) {
  if (uid < 0) return;
  (void)chown(root.c_str(), uid, gid);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    (void)lchown(entry.path().c_str(), uid, gid);
  }
}

// Waits for the "* OK" greeting on `port` (the sign that Dovecot serves).
bool WaitForGreeting(int port, absl::Time deadline) {
  while (absl::Now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      char buf[16] = {};
      const ssize_t n = read(fd, buf, 4);
      close(fd);
      if (n == 4 && std::string(buf, 4) == "* OK") return true;
    } else {
      close(fd);
      // Not listening yet: Dovecot's master binds its listeners as it starts.
      struct timespec ts{0, 20'000'000};
      nanosleep(&ts, nullptr);
    }
  }
  return false;
}

// The processes whose parent is `parent`, with their names (/proc/PID/stat:
// "pid (comm) state ppid ...").
std::vector<std::pair<pid_t, std::string>> ChildrenOf(pid_t parent) {
  std::vector<std::pair<pid_t, std::string>> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    const std::string stat = ReadFile(entry.path().string() + "/stat");
    const size_t open = stat.find('(');
    const size_t close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 2 > stat.size()) continue;
    std::vector<std::string> rest = absl::StrSplit(stat.substr(close + 2), ' ');
    pid_t ppid = 0;
    if (rest.size() < 2 || !absl::SimpleAtoi(rest[1], &ppid) || ppid != parent) continue;
    children.emplace_back(pid, stat.substr(open + 1, close - open - 1));
  }
  return children;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DovecotServer>> DovecotServer::Start(const std::string& introspection_url,
                                                                   const std::string& idp_ca_file) {
  if (!std::filesystem::exists("/usr/sbin/dovecot")) {
    return absl::FailedPreconditionError("dovecot is not installed; run scripts/install-deps --test");
  }
  auto server = std::unique_ptr<DovecotServer>(new DovecotServer());
  char templ[] = "/tmp/tokenbroker-dovecot-XXXXXX";
  if (mkdtemp(templ) == nullptr) return absl::InternalError("mkdtemp failed");
  server->dir_ = templ;
  const std::string& d = server->dir_;
  std::string user = "nobody", group = "nogroup";
  if (getuid() == 0) {
    server->uid_ = 65534;
    server->gid_ = 65534;
  } else {
    user = getpwuid(getuid())->pw_name;
    group = getgrgid(getgid())->gr_name;
  }
  for (const char* sub : {"run", "state", "mail"}) std::filesystem::create_directories(d + "/" + sub);
  // A certificate for 127.0.0.1 and localhost.
  TempDir certs;
  CertificateFiles tls = MakeSelfSignedCertificate(certs, "imap", 30, "rsa", "IP:127.0.0.1,DNS:localhost");
  server->certificate_ = d + "/server.pem";
  std::filesystem::copy_file(tls.certificate, server->certificate_);
  std::filesystem::copy_file(tls.private_key, d + "/server.key");
  std::filesystem::copy_file(idp_ca_file, d + "/idp-ca.pem");
  server->imap_port_ = FreePort();
  server->imaps_port_ = FreePort();
  const int uid = server->uid_ >= 0 ? server->uid_ : static_cast<int>(getuid());
  const int gid = server->gid_ >= 0 ? server->gid_ : static_cast<int>(getgid());
  RETURN_IF_ERROR(WriteTextFile(d + "/oauth2.conf.ext",
                                     absl::StrCat("introspection_mode = post\n"
                                                  "introspection_url = ", introspection_url, "\n"
                                                  "username_attribute = username\n"
                                                  "active_attribute = active\n"
                                                  "active_value = true\n"
                                                  "tls_ca_cert_file = ", d, "/idp-ca.pem\n"
                                                  "timeout_msecs = 5000\n")));
  const std::string config = absl::StrCat(
      "base_dir = ", d, "/run\n",
      "state_dir = ", d, "/state\n",
      "log_path = ", d, "/dovecot.log\n",
      "protocols = imap\n"
      "listen = 127.0.0.1\n"
      "ssl = yes\n"
      "ssl_cert = <", d, "/server.pem\n",
      "ssl_key = <", d, "/server.key\n",
      "default_internal_user = ", user, "\n",
      "default_internal_group = ", group, "\n",
      "default_login_user = ", user, "\n",
      "first_valid_uid = 1\n"
      "auth_mechanisms = xoauth2 oauthbearer\n"
      "auth_failure_delay = 0\n"
      "disable_plaintext_auth = yes\n"
      "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = ", d, "/oauth2.conf.ext\n}\n",
      "userdb {\n  driver = static\n  args = uid=", uid, " gid=", gid, " home=", d,
      "/mail/%u allow_all_users=yes\n}\n",
      "mail_location = maildir:~/Maildir\n"
      "namespace inbox {\n  inbox = yes\n  separator = /\n"
      "  mailbox Sent {\n    special_use = \\Sent\n  }\n"
      "  mailbox Trash {\n    special_use = \\Trash\n  }\n"
      "  mailbox Drafts {\n    special_use = \\Drafts\n  }\n}\n"
      "service imap-login {\n  chroot =\n  inet_listener imap {\n    port = ", server->imap_port_, "\n  }\n",
      "  inet_listener imaps {\n    port = ", server->imaps_port_, "\n    ssl = yes\n  }\n}\n",
      "service anvil {\n  chroot =\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
      "service imap {\n  chroot =\n}\n"
      "service auth {\n  user = ", user, "\n}\n"
      "service auth-worker {\n  user = ", user, "\n}\n"
      "service stats {\n  chroot =\n}\n");
  RETURN_IF_ERROR(WriteTextFile(d + "/dovecot.conf", config));
  ChownTree(d, server->uid_, server->gid_);
  std::filesystem::permissions(d, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                      std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                      std::filesystem::perms::others_exec);
  auto proc = Subprocess::Start({"/usr/sbin/dovecot", "-F", "-c", d + "/dovecot.conf"}, d, server->uid_,
                                server->gid_);
  if (!proc.ok()) return proc.status();
  server->process_ = std::move(*proc);
  if (!WaitForGreeting(server->imap_port_, absl::Now() + absl::Seconds(30))) {
    return absl::UnavailableError(absl::StrCat("dovecot did not greet on port ", server->imap_port_, ": ",
                                               server->process_->Stderr(), "\n", server->Log()));
  }
  return server;
}

DovecotServer::~DovecotServer() {
  if (process_ != nullptr) {
    process_->Signal(SIGTERM);
    (void)process_->Wait(absl::Seconds(30));
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

absl::Status DovecotServer::Kick(const std::string& user) {
  CommandResult r = RunCommand({"/usr/bin/doveadm", "-c", dir_ + "/dovecot.conf", "kick", user});
  if (r.exit_code != 0) return absl::InternalError("doveadm kick failed: " + r.err + r.out);
  return absl::OkStatus();
}

absl::Status DovecotServer::Doveadm(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/doveadm", "-c", dir_ + "/dovecot.conf"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) return absl::InternalError(absl::StrCat("doveadm ", args[0], " failed: ", r.err, r.out));
  return absl::OkStatus();
}

absl::Status DovecotServer::Deliver(const std::string& user, const std::string& folder, const std::string& rfc822) {
  const std::string file = absl::StrCat(dir_, "/deliver-", seeded_++, ".eml");
  RETURN_IF_ERROR(WriteTextFile(file, rfc822));
  // doveadm save reads the message from standard input.
  CommandResult r = RunCommand({"/bin/sh", "-c",
                                absl::StrCat("exec /usr/bin/doveadm -c '", dir_, "/dovecot.conf' save -u '", user,
                                             "' -m '", folder, "' < '", file, "'")});
  std::filesystem::remove(file);
  if (r.exit_code != 0) return absl::InternalError(absl::StrCat("doveadm save failed: ", r.err, r.out));
  return absl::OkStatus();
}

absl::Status DovecotServer::Restart(const std::function<absl::Status()>& while_down) {
  // The master and every process it started, at once; the new master can
  // only listen once none of them holds the ports.
  const std::vector<std::pair<pid_t, std::string>> children = ChildrenOf(process_->pid());
  process_->Signal(SIGKILL);
  for (const auto& [pid, comm] : children) kill(pid, SIGKILL);
  RETURN_IF_ERROR(process_->Wait(absl::Seconds(30)).status());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  auto alive = [](pid_t pid) {
    // Gone, or a zombie (which holds no socket) that nobody reaped yet.
    const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    const size_t close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
  };
  for (const auto& [pid, comm] : children) {
    while (alive(pid) && absl::Now() < deadline) {
      struct timespec ts{0, 10'000'000};
      nanosleep(&ts, nullptr);
    }
  }
  if (while_down) RETURN_IF_ERROR(while_down());
  auto proc = Subprocess::Start({"/usr/sbin/dovecot", "-F", "-c", dir_ + "/dovecot.conf"}, dir_, uid_, gid_);
  if (!proc.ok()) return proc.status();
  process_ = std::move(*proc);
  if (!WaitForGreeting(imap_port_, absl::Now() + absl::Seconds(30))) {
    return absl::UnavailableError(absl::StrCat("dovecot did not greet again on port ", imap_port_, ": ",
                                               process_->Stderr(), "\n", Log()));
  }
  return absl::OkStatus();
}

absl::Status DovecotServer::KillImapProcesses() {
  int killed = 0;
  for (const auto& [pid, comm] : ChildrenOf(process_->pid())) {
    if (comm == "imap" && kill(pid, SIGKILL) == 0) ++killed;
  }
  if (killed == 0) return absl::NotFoundError("no IMAP process of Dovecot was running");
  return absl::OkStatus();
}

std::string DovecotServer::Log() const { return ReadFile(dir_ + "/dovecot.log"); }

absl::Status DovecotServer::Seed(const std::string& user, const std::vector<SeedMessage>& messages) {
  const std::string maildir = absl::StrCat(dir_, "/mail/", user, "/Maildir");
  for (const SeedMessage& m : messages) {
    std::string folder_dir = maildir;
    if (m.folder != "INBOX") {
      // Maildir++: ".a.b" for a/b, names in modified UTF-7.
      absl::StatusOr<std::string> encoded = EncodeMailboxName(m.folder);
      if (!encoded.ok()) return encoded.status();
      folder_dir = absl::StrCat(maildir, "/.", absl::StrReplaceAll(*encoded, {{"/", "."}}));
    }
    for (const char* sub : {"cur", "new", "tmp"}) std::filesystem::create_directories(folder_dir + "/" + sub);
    if (m.folder != "INBOX") RETURN_IF_ERROR(WriteTextFile(folder_dir + "/maildirfolder", ""));
    const std::string name = absl::StrCat(1'700'000'000 + seeded_, ".M", seeded_, "P1.tokenbroker-test,S=",
                                          m.rfc822.size(), m.seen ? ":2,S" : "");
    ++seeded_;
    RETURN_IF_ERROR(WriteTextFile(absl::StrCat(folder_dir, m.seen ? "/cur/" : "/new/", name), m.rfc822));
  }
  ChownTree(absl::StrCat(dir_, "/mail"), uid_, gid_);
  return absl::OkStatus();
}

}  // namespace tokenbroker::testing
