// tokenbrokerd serving gRPC over TLS: mutual TLS against a CA the test makes
// with OpenSSL, callers without a certificate or with one from another CA
// refused at the handshake, and a rotated server certificate served without a
// restart.
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/files.h"
#include "tests/support/daemon.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;
using testing::CommandResult;

class TlsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = testing::MakeCertificateAuthority(dir_, "broker-ca");
    other_ca_ = testing::MakeCertificateAuthority(dir_, "other-ca");
    server_ = testing::MakeSignedCertificate(dir_, "broker-a", ca_, "IP:127.0.0.1,DNS:localhost", false);
    client_ = testing::MakeSignedCertificate(dir_, "service-a", ca_, "URI:spiffe://example.org/ns/mail/sa/a", true);
    foreign_ = testing::MakeSignedCertificate(dir_, "intruder", other_ca_, "URI:spiffe://evil.example/x", true);
    // The broker reads the files it is pointed at; rotation replaces them.
    cert_path_ = dir_.File("tls.crt");
    key_path_ = dir_.File("tls.key");
    Install(server_);
  }

  void Install(const testing::CertificateFiles& files) {
    ASSERT_TRUE(WriteFileAtomically(key_path_, testing::ReadFile(files.private_key), 0600).ok());
    ASSERT_TRUE(WriteFileAtomically(cert_path_, testing::ReadFile(files.certificate), 0644).ok());
  }

  std::string Config(const std::string& tls_extra = "") {
    return absl::StrReplaceAll(testing::DaemonConfig(dir_),
                               {{"  plaintext: true\n",
                                 absl::StrCat("  tls:\n    certificate_file: \"", cert_path_,
                                              "\"\n    private_key_file: \"", key_path_, "\"\n    client_ca_file: \"",
                                              ca_.certificate, "\"\n    require_client_certificate: true\n",
                                              tls_extra)}});
  }

  CommandResult Health(const std::vector<std::string>& tls_flags) {
    std::vector<std::string> args = tls_flags;
    args.push_back("health");
    return testing::Ctl(daemon_.grpc_address, args);
  }
  std::vector<std::string> Good() {
    return {"--ca-file", ca_.certificate, "--cert-file", client_.certificate, "--key-file", client_.private_key};
  }

  testing::TempDir dir_;
  testing::CertificateFiles ca_, other_ca_, server_, client_, foreign_;
  std::string cert_path_, key_path_;
  testing::RunningDaemon daemon_;
};

TEST_F(TlsE2ETest, MutualTlsAdmitsCallersWithOurCertificatesOnly) {
  daemon_ = testing::StartDaemon(dir_.WriteFile("broker.yaml", Config()), dir_.path());
  ASSERT_FALSE(daemon_.grpc_address.empty());
  CommandResult ok = Health(Good());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "SERVING\n");

  CommandResult no_cert = Health({"--ca-file", ca_.certificate});
  EXPECT_EQ(no_cert.exit_code, 1);
  EXPECT_THAT(no_cert.err, HasSubstr("UNAVAILABLE"));
  CommandResult foreign = Health({"--ca-file", ca_.certificate, "--cert-file", foreign_.certificate, "--key-file",
                                  foreign_.private_key});
  EXPECT_EQ(foreign.exit_code, 1);
  std::cerr << "a refused client certificate, as the caller sees it: " << foreign.err;
  CommandResult plaintext = Health({});
  EXPECT_EQ(plaintext.exit_code, 1);
  // And the client refuses a broker it cannot verify.
  CommandResult wrong_ca = Health({"--ca-file", other_ca_.certificate, "--cert-file", client_.certificate,
                                   "--key-file", client_.private_key});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_EQ(daemon_.Stop(), 0);
  // The refused handshakes are in the broker's log, as JSON lines like every
  // other line (gRPC's own lines included).
  const std::string log = daemon_.process->Stderr();
  EXPECT_THAT(log, HasSubstr("\"msg\":\"grpc\""));
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "{") && absl::EndsWith(line, "}")) << "not a JSON line: " << line;
  }
}

TEST_F(TlsE2ETest, ARotatedCertificateIsServedWithoutARestart) {
  daemon_ = testing::StartDaemon(dir_.WriteFile("broker.yaml", Config("    reload_interval: 1s\n")), dir_.path());
  ASSERT_FALSE(daemon_.grpc_address.empty());
  auto presented = [&] {
    CommandResult r = testing::RunCommand(
        {"/usr/bin/openssl", "s_client", "-connect", daemon_.grpc_address, "-CAfile", ca_.certificate, "-cert",
         client_.certificate, "-key", client_.private_key, "-alpn", "h2", "-brief"},
        absl::Seconds(10));
    return r.out + r.err;
  };
  EXPECT_THAT(presented(), HasSubstr("CN = broker-a"));
  Install(testing::MakeSignedCertificate(dir_, "broker-b", ca_, "IP:127.0.0.1", false));
  // The file watcher looks every second: wait for it, with a deadline.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string now_presented;
  while (absl::Now() < deadline) {
    now_presented = presented();
    if (absl::StrContains(now_presented, "CN = broker-b")) break;
  }
  EXPECT_THAT(now_presented, HasSubstr("CN = broker-b"));
  CommandResult ok = Health(Good());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(daemon_.Stop(), 0);
}

// cert-manager issues ECDSA certificates by default: an EC server key serves.
TEST_F(TlsE2ETest, AnEcServerCertificateServes) {
  testing::CertificateFiles ec = testing::MakeSelfSignedCertificate(dir_, "broker-ec", 30, "ec", "IP:127.0.0.1");
  Install(ec);
  daemon_ = testing::StartDaemon(dir_.WriteFile("broker.yaml", Config()), dir_.path());
  ASSERT_FALSE(daemon_.grpc_address.empty()) << daemon_.process->Stderr();
  CommandResult ok =
      Health({"--ca-file", ec.certificate, "--cert-file", client_.certificate, "--key-file", client_.private_key});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "SERVING\n");
  EXPECT_EQ(daemon_.Stop(), 0);
}

TEST_F(TlsE2ETest, AKeyThatDoesNotMatchTheCertificateStopsStartUp) {
  testing::CertificateFiles other = testing::MakeSignedCertificate(dir_, "other", ca_, "IP:127.0.0.1", false);
  ASSERT_TRUE(WriteFileAtomically(key_path_, testing::ReadFile(other.private_key), 0600).ok());
  CommandResult r = testing::RunCommand({testing::DaemonPath(), "--config", dir_.WriteFile("broker.yaml", Config())},
                                        absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("server.tls.private_key_file"));
}

}  // namespace
}  // namespace tokenbroker
