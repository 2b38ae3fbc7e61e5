#include "tests/support/mail_test_env.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace tokenbroker::testing {

MailTestEnv::MailTestEnv(std::string secret)
    : secret_(std::move(secret)),
      idp_(SystemClock::Get()),
      tls_(MakeSelfSignedCertificate(dir_, "idp", 30, "rsa", "IP:127.0.0.1")),
      https_(idp_, "") {}

MailTestEnv::~MailTestEnv() {
  if (daemon_.process != nullptr) daemon_.Stop();
  dovecot_.reset();
  https_.Stop();
}

bool MailTestEnv::StartServers() {
  absl::Status started = https_.Start(tls_.certificate, tls_.private_key);
  EXPECT_TRUE(started.ok()) << started;
  if (!started.ok()) return false;
  authority_ = absl::StrCat("127.0.0.1:", https_.port());
  idp_.SetHost(authority_);
  idp_.RegisterApp(kTenant, "client-1", secret_);
  auto dovecot = DovecotServer::Start(absl::StrCat("https://", authority_, "/introspect"), tls_.certificate);
  EXPECT_TRUE(dovecot.ok()) << dovecot.status();
  if (!dovecot.ok()) return false;
  dovecot_ = *std::move(dovecot);
  return true;
}

bool MailTestEnv::StartDaemon(const std::string& mail_keys, const std::string& extra) {
  const std::string config = dir_.WriteFile(
      "broker.yaml", DaemonConfig(dir_) + absl::StrCat("http:\n  ca_file: \"", tls_.certificate,
                                                        "\"\nmail:\n  ca_file: \"", dovecot_->ca_file(), "\"\n",
                                                        mail_keys, extra));
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string saved = asan != nullptr ? asan : "";
  setenv("ASAN_OPTIONS", absl::StrCat(saved, saved.empty() ? "" : ":", "quarantine_size_mb=8").c_str(), 1);
  daemon_ = testing::StartDaemon(config, dir_.path());
  if (asan != nullptr) {
    setenv("ASAN_OPTIONS", saved.c_str(), 1);
  } else {
    unsetenv("ASAN_OPTIONS");
  }
  EXPECT_FALSE(daemon_.grpc_address.empty());
  if (daemon_.grpc_address.empty()) return false;
  return MustCtl({"app", "create", kApp, "--provider", "microsoft", "--tenant", kTenant, "--client-id", "client-1",
                  "--authority-host", authority_, "--client-secret-file", dir_.WriteFile("secret", secret_),
                  "--not-after", "2099-01-01", "--imap-host", "127.0.0.1", "--imap-port",
                  std::to_string(dovecot_->imaps_port())})
             .exit_code == 0;
}

void MailTestEnv::ImportGrant(const std::string& grant, const std::string& mailbox) {
  idp_.AddRefreshToken(absl::StrCat("0.rt-", grant), mailbox);
  MustCtl({"grant", "import", grant, "--app", kApp, "--mailbox", mailbox, "--refresh-token-file",
           dir_.WriteFile(absl::StrCat("rt-", grant), absl::StrCat("0.rt-", grant))});
}

CommandResult MailTestEnv::Ctl(const std::vector<std::string>& args) const {
  return testing::Ctl(daemon_.grpc_address, args);
}

CommandResult MailTestEnv::MustCtl(const std::vector<std::string>& args) const {
  CommandResult r = Ctl(args);
  EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  return r;
}

std::string MailTestEnv::Metric(const std::string& prefix) const {
  std::string out;
  for (absl::string_view line : absl::StrSplit(*HttpGet(daemon_.metrics_address, "/metrics"), '\n')) {
    if (absl::StartsWith(line, prefix)) absl::StrAppend(&out, line, "\n");
  }
  return out;
}

double MailTestEnv::MetricValue(const std::string& series) const {
  for (absl::string_view line : absl::StrSplit(*HttpGet(daemon_.metrics_address, "/metrics"), '\n')) {
    if (absl::ConsumePrefix(&line, series + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line, &v)) return v;
    }
  }
  return -1;
}

}  // namespace tokenbroker::testing
