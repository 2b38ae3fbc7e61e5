// MailService benchmark: fetching the same messages through tokenbrokerd
// (gRPC, the broker's pooled IMAP connection) against a direct IMAP client
// (ImapSession over TLS, already logged in) on the same Dovecot in the same
// run. Parts (--only= runs one):
//   small    many small messages (about 4 KiB each), one call each (a
//            FetchMessage stream, and a unary GetMessage), one caller; and
//            their floor, what any one-call-per-message design must do at
//            least: an empty call to the broker and then a direct fetch, for
//            every message (also an empty call alone, one after another)
//   callers  the same with four callers at once
//   batch    the same messages, 1000 per FetchMessages call, against one
//            UID FETCH of the same set
//   big      one large message (100 MB; 10 MB with --quick): throughput, and
//            the broker's peak resident memory while it streams (VmHWM of
//            tokenbrokerd, read from /proc, against its peak before the fetch)
// Targets: at least 90% of the direct throughput (one call per message: at
// most 1.25x the floor's time, measured as above in the same rounds); peak
// memory growth while streaming under 64 MB. It also prints the CPU time each
// process spent per item (a small message, or a MB of the large one; from
// /proc/<pid>/stat): Dovecot, the broker, and this process (the direct
// client, or the gRPC caller), and how many cores were busy, which shows
// whether a part was bound by this machine's CPU.
//
// Usage: mail_bench [--quick] [--split-cores] [--only=small|big|callers|batch]
//                   [--get-message-threads=N] [--fetch-message-threads=N]
//                   [--get-message-threads-poll=true|false] [--svg=DIR] (needs dovecot-imapd and tokenbrokerd)
// --get-message-threads=N and --fetch-message-threads=N run the broker with
// mail.get_message_threads: N and mail.fetch_message_threads: N (0: that
// method on the stream workers), --get-message-threads-poll with
// mail.get_message_threads_poll; without them, the broker's defaults.
// With --svg=DIR it writes DIR/mail-<layout>.svg (the ratio of each part, and
// the best one call per message can reach) and DIR/mail-memory-<layout>.svg
// (the broker's resident memory while it streams the large message), where
// <layout> is shared-cores or split-cores, followed by OneMessageThreads'
// ChartSuffix (nothing as the broker is configured by default).
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/match.h"
#include "bench/process_stats.h"
#include "bench/svg_chart.h"
#include "client/broker_client.h"
#include "service/crypto/random.h"
#include "service/imap/imap_session.h"
#include "tests/support/daemon.h"
#include "tests/support/dovecot_server.h"
#include "tests/support/fake_microsoft.h"
#include "tests/support/https_server.h"

namespace tokenbroker {
namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "mail_bench: %s\n", what.c_str());
    std::exit(1);
  }
}

// The index of the floor among the one-call-per-message parts: an empty
// call and then a direct fetch for each message.
constexpr int kFloor = 3;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// CPU time (user + system, in seconds) of the processes this benchmark
// runs: Dovecot's (its master and the master's children: imap-login, imap,
// auth, ...), the broker's, and this one's (the direct client or the gRPC
// caller).
struct CpuTimes {
  double dovecot = 0, broker = 0, client = 0;
  // Context switches of the broker's threads (voluntary and not): each is a
  // hand-off from one thread to another, or a wait for the network.
  double broker_switches = 0;
};

// The context switches of every thread of process `pid` still running.
double ContextSwitches(pid_t pid) {
  double total = 0;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    std::ifstream in(task.path() / "status");
    std::string line;
    while (std::getline(in, line)) {
      uint64_t n = 0;
      if ((absl::StartsWith(line, "voluntary_ctxt_switches:") || absl::StartsWith(line, "nonvoluntary_ctxt_switches:")) &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)), &n)) {
        total += static_cast<double>(n);
      }
    }
  }
  return total;
}

CpuTimes ReadCpu(pid_t broker, pid_t dovecot) {
  CpuTimes t;
  t.broker = ProcessCpu(absl::StrCat("/proc/", broker, "/stat"));
  t.broker_switches = ContextSwitches(broker);
  t.client = ProcessCpu("/proc/self/stat");
  t.dovecot = ProcessCpu(absl::StrCat("/proc/", dovecot, "/stat"));
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t parent = 0;
    const double cpu = ProcessCpu(entry.path().string() + "/stat", &parent);
    if (parent == dovecot) t.dovecot += cpu;
  }
  return t;
}

// One part of the benchmark, run a few times: the best rate, and the CPU
// time and wall time summed over the runs.
struct Phase {
  double best_rate = 0;
  CpuTimes cpu;
  double wall = 0;
  uint64_t items = 0;

  template <typename Work>
  void Measure(std::pair<pid_t, pid_t> broker_and_dovecot, uint64_t n, Work work) {
    const auto [broker, dovecot] = broker_and_dovecot;
    const CpuTimes before = ReadCpu(broker, dovecot);
    const auto start = std::chrono::steady_clock::now();
    work();
    const double seconds = Seconds(start);
    const CpuTimes after = ReadCpu(broker, dovecot);
    best_rate = std::max(best_rate, static_cast<double>(n) / seconds);
    wall += seconds;
    items += n;
    cpu.dovecot += after.dovecot - before.dovecot;
    cpu.broker += after.broker - before.broker;
    cpu.client += after.client - before.client;
    cpu.broker_switches += after.broker_switches - before.broker_switches;
  }
  CpuTimes PerItem() const {
    const double n = items > 0 ? static_cast<double>(items) : 1;
    return {cpu.dovecot / n, cpu.broker / n, cpu.client / n, cpu.broker_switches / n};
  }
  double CoresBusy() const { return wall > 0 ? (cpu.dovecot + cpu.broker + cpu.client) / wall : 0; }
};

std::string SmallMessage(int i) {
  return absl::StrCat("From: Bench <bench@example.com>\r\nTo: bench@contoso.com\r\nSubject: small ", i,
                      "\r\nMessage-ID: <", i, "@bench>\r\n\r\n", std::string(4000, 'a' + i % 26), "\r\n");
}

// Samples a process's resident memory every 10 ms on its own thread while it
// lives: (seconds since start, MB) points.
class ResidentSampler {
 public:
  explicit ResidentSampler(pid_t pid)
      : start_(std::chrono::steady_clock::now()), thread_([this, pid] {
          while (!stop_) {
            points_.emplace_back(Seconds(start_), static_cast<double>(testing::ResidentBytes(pid)) / (1 << 20));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
        }) {}
  // Stops sampling; the points taken.
  std::vector<std::pair<double, double>> Finish() {
    stop_ = true;
    thread_.join();
    return std::move(points_);
  }

 private:
  const std::chrono::steady_clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::vector<std::pair<double, double>> points_;  // written by thread_ until Finish joins it
  std::thread thread_;
};

// Pins the calling thread (and the threads and processes it starts from now
// on) to one CPU.
void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  Check(sched_setaffinity(0, sizeof set, &set) == 0, "sched_setaffinity");
}

int Main(bool quick, const std::string& only, bool split_cores, const OneMessageThreads& one_message_threads,
         const std::string& svg_dir) {
  auto runs = [&only](absl::string_view part) { return only.empty() || only == part; };
  const int small_count = quick ? 100 : 1000;
  const size_t big_size = quick ? 10u << 20 : 100u << 20;
  testing::TempDir dir;
  testing::FakeMicrosoft idp(SystemClock::Get());
  testing::CertificateFiles tls = testing::MakeSelfSignedCertificate(dir, "idp", 30, "rsa", "IP:127.0.0.1");
  testing::HttpsServer https(idp, "");
  Check(https.Start(tls.certificate, tls.private_key).ok(), "identity provider");
  const std::string authority = absl::StrCat("127.0.0.1:", https.port());
  idp.SetHost(authority);
  idp.RegisterApp("contoso", "client-1", "s3cret");
  idp.AddRefreshToken("rt-bench", "bench@contoso.com");
  // With --split-cores Dovecot runs on CPU 0 and everything else (the direct
  // client, or tokenbrokerd and its caller) on CPU 1.
  if (split_cores) {
    Check(std::thread::hardware_concurrency() >= 2, "--split-cores needs at least 2 CPUs");
    PinTo(0);
  }
  auto dovecot = testing::DovecotServer::Start(absl::StrCat("https://", authority, "/introspect"), tls.certificate);
  Check(dovecot.ok(), std::string(dovecot.status().message()));
  if (split_cores) PinTo(1);
  std::vector<testing::SeedMessage> seed;
  for (int i = 0; i < small_count; ++i) seed.push_back({"INBOX", SmallMessage(i), true});
  std::string big = absl::StrCat("From: Bench <bench@example.com>\r\nSubject: big\r\n\r\n");
  big.resize(big_size, 'x');
  seed.push_back({"Big", big, true});
  Check((*dovecot)->Seed("bench@contoso.com", seed).ok(), "seeding");

  const std::string config =
      dir.WriteFile("broker.yaml", testing::DaemonConfig(dir) +
                                       absl::StrCat("http:\n  ca_file: \"", tls.certificate, "\"\nmail:\n  ca_file: \"",
                                                    (*dovecot)->ca_file(), "\"\n", one_message_threads.MailConfig()));
  testing::RunningDaemon daemon = testing::StartDaemon(config, dir.path());
  Check(!daemon.grpc_address.empty(), "tokenbrokerd did not start");
  auto ctl = [&](const std::vector<std::string>& args) {
    testing::CommandResult r = testing::Ctl(daemon.grpc_address, args);
    Check(r.exit_code == 0, r.err);
  };
  ctl({"app", "create", "contoso", "--provider", "microsoft", "--tenant", "contoso", "--client-id", "client-1",
       "--authority-host", authority, "--client-secret-file", dir.WriteFile("secret", "s3cret"), "--not-after",
       "2099-01-01", "--imap-host", "127.0.0.1", "--imap-port", std::to_string((*dovecot)->imaps_port())});
  ctl({"grant", "import", "bench", "--app", "contoso", "--mailbox", "bench@contoso.com", "--refresh-token-file",
       dir.WriteFile("rt", "rt-bench")});

  ClientOptions options;
  options.target = daemon.grpc_address;
  std::unique_ptr<BrokerClient> client = *BrokerClient::Create(options);
  auto broker_fetch = [&](const std::string& folder, uint32_t uid) -> uint64_t {
    v1::FetchMessageRequest request;
    request.set_grant("bench");
    request.set_folder(folder);
    request.set_uid(uid);
    std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(10));
    auto reader = client->mail().FetchMessage(context.get(), request);
    v1::FetchMessageResponse chunk;
    uint64_t n = 0;
    while (reader->Read(&chunk)) n += chunk.data().size();
    Check(reader->Finish().ok(), "broker fetch failed");
    return n;
  };
  auto broker_get = [&](const std::string& folder, uint32_t uid) -> uint64_t {
    v1::GetMessageRequest request;
    request.set_grant("bench");
    request.set_folder(folder);
    request.set_uid(uid);
    std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(10));
    v1::GetMessageResponse response;
    Check(client->mail().GetMessage(context.get(), request, &response).ok(), "broker GetMessage failed");
    return response.data().size();
  };

  // The direct client: one logged-in session, like the broker's pooled one.
  ImapServer server;
  server.host = "127.0.0.1";
  server.port = (*dovecot)->imaps_port();
  server.ca_file = (*dovecot)->ca_file();
  auto session = ImapSession::Open(server);
  Check(session.ok(), "direct IMAP connection");
  testing::CommandResult token = testing::Ctl(daemon.grpc_address, {"token", "get", "bench"});
  Check(token.exit_code == 0, token.err);
  Check((*session)
            ->Authenticate("bench@contoso.com", Secret::CopyFrom(token.out.substr(0, token.out.find('\n'))),
                           SaslMechanism::kXoauth2)
            .ok(),
        "direct login");
  auto direct_fetch = [&](const std::string& folder, uint32_t uid) -> uint64_t {
    if (!(*session)->selected().has_value() || (*session)->selected()->folder != folder) {
      Check((*session)->Examine(folder).ok(), "EXAMINE");
    }
    absl::StatusOr<uint64_t> n =
        (*session)->FetchSection(uid, "", 256 * 1024, [](absl::string_view) { return absl::OkStatus(); });
    Check(n.ok(), "direct fetch failed");
    return *n;
  };
  // The floor of one call per message: an empty call, then a direct fetch.
  auto empty_then_direct = [&](const std::string& folder, uint32_t uid) -> uint64_t {
    Check(client->GetServerInfo().ok(), "GetServerInfo");
    return direct_fetch(folder, uid);
  };

  // Warm up both (the broker logs in, Dovecot indexes the folders).
  broker_fetch("INBOX", 1);
  direct_fetch("INBOX", 1);
  broker_fetch("Big", 1);
  direct_fetch("Big", 1);

  const std::string threads_on = one_message_threads.Describe();
  std::printf(
      "mail_bench: %d small messages, one message of %zu MB, same Dovecot, same run, best of 3 rounds; "
      "%s; %s\n",
      small_count, big_size >> 20,
      split_cores ? "Dovecot on CPU 0, the direct client or the broker and its caller on CPU 1"
                  : "all processes share all CPUs",
      threads_on.c_str());
  const pid_t broker_pid = daemon.process->pid();
  const std::pair<pid_t, pid_t> pids = {broker_pid, (*dovecot)->pid()};
  // Three rounds of each part, direct and broker alternating; the best round
  // of each counts (this machine's other load only ever slows a round down).
  // CPU time is summed over the rounds.
  // [direct, broker]; the one-call-per-message parts [direct, FetchMessage,
  // GetMessage, floor], where the floor is an empty call and then a direct
  // fetch for each message: the least any design with one call per message
  // does (kFloor). The sum of an empty call's time and a direct fetch's,
  // each in a loop of its own, is less than the two take one after the other.
  Phase small[4], callers[4], batch[2], large[2];
  uint64_t peak_growth = 0;
  // The broker's resident memory while it streamed the large message, in the
  // last round, and before it began.
  std::vector<std::pair<double, double>> streaming_memory;
  double memory_before_mb = 0;
  for (int round = 0; round < 3 && (runs("small") || runs("big")); ++round) {
    for (int which = 0; which < 4; ++which) {
      using Fetch = std::function<uint64_t(const std::string&, uint32_t)>;
      const Fetch fetch = which == 0   ? Fetch(direct_fetch)
                          : which == 1 ? Fetch(broker_fetch)
                          : which == 2 ? Fetch(broker_get)
                                       : Fetch(empty_then_direct);
      if (runs("small")) {
        small[which].Measure(pids, small_count, [&] {
          for (int i = 1; i <= small_count; ++i) fetch("INBOX", static_cast<uint32_t>(i));
        });
      }
      if (!runs("big") || which >= 2) continue;
      if (which == 1) testing::ResetPeakResident(broker_pid);
      const uint64_t rss_before = which == 1 ? testing::PeakResidentBytes(broker_pid) : 0;
      std::optional<ResidentSampler> sampler;
      if (which == 1 && round == 2) {
        memory_before_mb = static_cast<double>(testing::ResidentBytes(broker_pid)) / (1 << 20);
        sampler.emplace(broker_pid);
      }
      large[which].Measure(pids, big_size >> 20, [&] {
        Check(fetch("Big", 1) == big_size, "the large message came back with another size");
      });
      if (sampler.has_value()) streaming_memory = sampler->Finish();
      if (which == 1) peak_growth = std::max(peak_growth, testing::PeakResidentBytes(broker_pid) - rss_before);
    }
  }
  // An empty call (GetServerInfo) to the same broker, one after another.
  Phase empty;
  for (int round = 0; round < 3 && runs("small"); ++round) {
    empty.Measure(pids, small_count, [&] {
      for (int i = 0; i < small_count; ++i) Check(client->GetServerInfo().ok(), "GetServerInfo");
    });
  }

  // Four callers at once: four direct sessions against four callers sharing
  // the broker (whose pool holds four connections), and their floor: four
  // callers each making an empty call and then a direct fetch on a session of
  // its own; and four callers' empty calls alone.
  constexpr int kCallers = 4;
  std::vector<std::unique_ptr<ImapSession>> sessions;
  for (int c = 0; c < kCallers; ++c) {
    auto s = ImapSession::Open(server);
    Check(s.ok(), "direct IMAP connection");
    Check((*s)->Authenticate("bench@contoso.com", Secret::CopyFrom(token.out.substr(0, token.out.find('\n'))),
                             SaslMechanism::kXoauth2)
              .ok(),
          "direct login");
    Check((*s)->Examine("INBOX").ok(), "EXAMINE");
    sessions.push_back(*std::move(s));
  }
  Phase empty_callers;
  for (int round = 0; round < 3 && runs("callers"); ++round) {
    for (int which = 0; which < 5; ++which) {
      Phase& phase = which < 4 ? callers[which] : empty_callers;
      phase.Measure(pids, small_count, [&] {
        std::vector<std::thread> threads;
        for (int c = 0; c < kCallers; ++c) {
          threads.emplace_back([&, c] {
            for (int i = 1 + c; i <= small_count; i += kCallers) {
              if (which == kFloor) Check(client->GetServerInfo().ok(), "GetServerInfo");
              if (which == 0 || which == kFloor) {
                Check(sessions[c]
                          ->FetchSection(static_cast<uint32_t>(i), "", 256 * 1024,
                                         [](absl::string_view) { return absl::OkStatus(); })
                          .ok(),
                      "direct fetch");
              } else if (which == 1) {
                broker_fetch("INBOX", static_cast<uint32_t>(i));
              } else if (which == 2) {
                broker_get("INBOX", static_cast<uint32_t>(i));
              } else {
                Check(client->GetServerInfo().ok(), "GetServerInfo");
              }
            }
          });
        }
        for (auto& t : threads) t.join();
      });
    }
  }

  // Many messages in one call: FetchMessages against one UID FETCH of the
  // same set on a direct session, kBatchRepeats times per round (long
  // enough to measure).
  std::vector<uint32_t> all;
  for (int i = 1; i <= small_count; ++i) all.push_back(static_cast<uint32_t>(i));
  constexpr int kBatchRepeats = 10;
  uint64_t batch_growth = 0;
  for (int round = 0; round < 3 && runs("batch"); ++round) {
    for (int which = 0; which < 2; ++which) {
      if (which == 1) testing::ResetPeakResident(broker_pid);
      const uint64_t rss_before = which == 1 ? testing::PeakResidentBytes(broker_pid) : 0;
      batch[which].Measure(pids, kBatchRepeats * small_count, [&] {
        for (int repeat = 0; repeat < kBatchRepeats; ++repeat) {
          uint64_t messages = 0;
          if (which == 0) {
            absl::StatusOr<uint64_t> n = sessions[0]->FetchSections(
                all, "", 256 * 1024, [](absl::string_view) { return absl::OkStatus(); },
                [](const ImapMessageSummary&, uint64_t) { return absl::OkStatus(); });
            Check(n.ok(), "direct batch fetch");
            messages = *n;
          } else {
            v1::FetchMessagesRequest request;
            request.set_grant("bench");
            request.set_folder("INBOX");
            for (uint32_t uid : all) request.add_uids(uid);
            std::unique_ptr<grpc::ClientContext> context = client->NewContext(absl::Minutes(10));
            auto reader = client->mail().FetchMessages(context.get(), request);
            v1::FetchMessagesResponse response;
            while (reader->Read(&response)) {
              for (const v1::FetchPiece& piece : response.pieces()) messages += piece.has_metadata() ? 1 : 0;
            }
            Check(reader->Finish().ok(), "broker batch fetch failed");
          }
          Check(messages == all.size(), "a batch fetch missed messages");
        }
      });
      if (which == 1) {
        const uint64_t peak = testing::PeakResidentBytes(broker_pid);
        batch_growth = std::max(batch_growth, peak > rss_before ? peak - rss_before : 0);
      }
    }
  }
  for (auto& s : sessions) (void)s->Logout();
  (void)(*session)->Logout();

  auto row = [](const char* what, const Phase& direct, const Phase& broker, const char* unit) {
    std::printf("  %-48s direct %8.0f  broker %8.0f %s  ratio %.2f (target >= 0.90)\n", what, direct.best_rate,
                broker.best_rate, unit, broker.best_rate / direct.best_rate);
  };
  if (runs("small")) {
    row("small messages, one FetchMessage each, one caller", small[0], small[1], "msg/s");
    row("small messages, one GetMessage each, one caller", small[0], small[2], "msg/s");
  }
  if (runs("callers")) {
    row("small messages, one FetchMessage each, 4 callers", callers[0], callers[1], "msg/s");
    row("small messages, one GetMessage each, 4 callers", callers[0], callers[2], "msg/s");
  }
  if (runs("batch")) row("small messages, FetchMessages vs UID FETCH", batch[0], batch[1], "msg/s");
  if (runs("big")) row("one large message", large[0], large[1], "MB/s ");
  if (runs("big")) {
    std::printf("  broker peak memory growth while streaming %zu MB: %.1f MB (target < 64 MB)\n", big_size >> 20,
                static_cast<double>(peak_growth) / (1 << 20));
  }
  if (runs("batch")) {
    std::printf("  broker peak memory growth during FetchMessages of %d messages: %.1f MB\n", small_count,
                static_cast<double>(batch_growth) / (1 << 20));
  }
  // Where the time goes: CPU time of each process per item, and how many of
  // this machine's cores were busy (near all of them: the part was bound by
  // this machine's CPU, not by the broker's design).
  std::printf(
      "  CPU time per item in us (Dovecot + broker + caller = total), cores busy of %u, the broker's context "
      "switches per item:\n",
      std::thread::hardware_concurrency());
  auto cpu = [](const char* what, const Phase& p) {
    const CpuTimes per = p.PerItem();
    std::printf("    %-40s %7.1f + %6.1f + %6.1f = %7.1f   %.2f   %5.1f\n", what, per.dovecot * 1e6,
                per.broker * 1e6, per.client * 1e6, (per.dovecot + per.broker + per.client) * 1e6, p.CoresBusy(),
                per.broker_switches);
  };
  if (runs("small")) {
    cpu("small message, one call each: direct", small[0]);
    cpu("small message, FetchMessage: broker", small[1]);
    cpu("small message, GetMessage: broker", small[2]);
    cpu("small message, floor: empty call + direct", small[kFloor]);
    cpu("an empty call (GetServerInfo)", empty);
  }
  if (runs("callers")) {
    cpu("4 callers, one call each: direct", callers[0]);
    cpu("4 callers, FetchMessage: broker", callers[1]);
    cpu("4 callers, GetMessage: broker", callers[2]);
    cpu("4 callers, floor: empty call + direct", callers[kFloor]);
    cpu("4 callers, an empty call", empty_callers);
  }
  if (runs("batch")) {
    cpu("small message, FetchMessages: direct", batch[0]);
    cpu("small message, FetchMessages: broker", batch[1]);
  }
  if (runs("big")) {
    cpu("1 MB of the large message: direct", large[0]);
    cpu("1 MB of the large message: broker", large[1]);
  }
  // Any design with one call per message does at least an empty call and a
  // direct fetch per message: each call's time against that work, timed in
  // the same rounds. The sum of the two timed apart is printed too; the
  // floor's own work takes longer than that sum.
  auto against_floor = [](const char* what, const Phase* p, const Phase& empty) {
    const double floor_us = 1e6 / p[kFloor].best_rate;
    const double sum_us = 1e6 / empty.best_rate + 1e6 / p[0].best_rate;
    std::printf("  %s: an empty call and then a direct fetch %.0f us = the floor (at most %.2f of the direct rate; "
                "measured apart, an empty call %.0f us + a direct fetch %.0f us = %.0f us, the floor %.2fx that); "
                "FetchMessage %.0f us = %.2fx, GetMessage %.0f us = %.2fx the floor (target <= 1.25x; %.2fx and %.2fx "
                "the sum)\n",
                what, floor_us, (1e6 / p[0].best_rate) / floor_us, 1e6 / empty.best_rate, 1e6 / p[0].best_rate,
                sum_us, floor_us / sum_us, 1e6 / p[1].best_rate, (1e6 / p[1].best_rate) / floor_us,
                1e6 / p[2].best_rate, (1e6 / p[2].best_rate) / floor_us, (1e6 / p[1].best_rate) / sum_us,
                (1e6 / p[2].best_rate) / sum_us);
  };
  if (runs("small")) against_floor("one caller, a small message", small, empty);
  if (runs("callers")) against_floor("4 callers, a small message (time per message)", callers, empty_callers);
  if (!svg_dir.empty()) {
    const std::string layout =
        absl::StrCat(split_cores ? "split-cores" : "shared-cores", one_message_threads.ChartSuffix());
    const std::string where =
        absl::StrCat(split_cores ? "Dovecot on its own core" : "all processes share 2 cores", "; ", threads_on);
    auto ratio = [&](absl::string_view part, const Phase* p, int broker = 1) {
      return runs(part) && p[0].best_rate > 0 ? p[broker].best_rate / p[0].best_rate : -1;
    };
    // The best one call per message can reach: an empty call and then a
    // direct fetch per message.
    auto floor_of = [&](absl::string_view part, const Phase* p) {
      return runs(part) && p[0].best_rate > 0 ? p[kFloor].best_rate / p[0].best_rate : -1;
    };
    const double floor = floor_of("small", small);
    const double floor4 = floor_of("callers", callers);
    SvgBarChart chart(absl::StrCat("Mail through the broker against a direct IMAP client (", where, ")"),
                      {"one message a call,\none caller", "one message a call,\n4 callers",
                       "FetchMessages,\n1000 a call", absl::StrCat("one message\nof ", big_size >> 20, " MB")},
                      "broker / direct throughput");
    chart.AddSeries("broker / direct (FetchMessage for one a call)", {ratio("small", small), ratio("callers", callers),
                                                                      ratio("batch", batch), ratio("big", large)});
    chart.AddSeries("GetMessage / direct", {ratio("small", small, 2), ratio("callers", callers, 2), -1, -1});
    chart.AddSeries("floor: an empty call, then a direct fetch", {floor, floor4, -1, -1});
    chart.AddSeries("target: 1.25x the floor's time",
                    {floor > 0 ? floor / 1.25 : -1, floor4 > 0 ? floor4 / 1.25 : -1, -1, -1});
    chart.AddLimit("target 0.90", 0.9);
    Check(chart.WriteFile(absl::StrCat(svg_dir, "/mail-", layout, ".svg")).ok(), "writing the chart");
    if (!streaming_memory.empty()) {
      SvgChart memory(absl::StrCat("The broker's resident memory while it streams a ", big_size >> 20,
                                   " MB message (", where, ")"),
                      "seconds since the fetch began", "resident MB");
      memory.AddSeries("tokenbrokerd", streaming_memory);
      memory.AddLimit("before + 64 MB", memory_before_mb + 64);
      Check(memory.WriteFile(absl::StrCat(svg_dir, "/mail-memory-", layout, ".svg")).ok(), "writing the chart");
    }
  }
  Check(daemon.Stop() == 0, "tokenbrokerd did not stop cleanly");
  https.Stop();
  return 0;
}

}  // namespace
}  // namespace tokenbroker

int main(int argc, char** argv) {
  const tokenbroker::BenchFlags flags = tokenbroker::ParseBenchFlags(argc, argv);
  bool split_cores = false;
  std::string only;
  tokenbroker::OneMessageThreads one_message_threads;
  for (const std::string& arg : flags.rest) {
    if (arg == "--split-cores") {
      split_cores = true;
    } else if (std::optional<absl::Status> threads = tokenbroker::OneMessageThreadsFlag(arg, one_message_threads)) {
      if (!threads->ok()) {
        std::fprintf(stderr, "mail_bench: %s\n", std::string(threads->message()).c_str());
        return 2;
      }
    } else if (absl::StartsWith(arg, "--only=")) {
      only = arg.substr(7);
      if (only != "small" && only != "big" && only != "callers" && only != "batch") {
        std::fprintf(stderr, "mail_bench: --only takes small, big, callers or batch\n");
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: mail_bench [--quick] [--split-cores] [--only=small|big|callers|batch] "
                   "[--get-message-threads=N] [--fetch-message-threads=N] [--get-message-threads-poll=true|false] "
                   "[--svg=DIR]\n");
      return 2;
    }
  }
  if (absl::Status checked = one_message_threads.Check(); !checked.ok()) {
    std::fprintf(stderr, "mail_bench: %s\n", std::string(checked.message()).c_str());
    return 2;
  }
  return tokenbroker::Main(flags.quick, only, split_cores, one_message_threads, flags.svg_dir);
}
