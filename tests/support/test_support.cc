#include "tests/support/test_support.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace tokenbroker::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr && *base ? base : "/tmp", "/tokenbroker test.XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::WriteFile(const std::string& name, const std::string& contents, int mode) const {
  const std::string path = File(name);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  chmod(path.c_str(), static_cast<mode_t>(mode));
  return path;
}

std::string BinDir() {
  const char* dir = std::getenv("TOKENBROKER_BIN_DIR");
  return dir != nullptr && *dir ? dir : TOKENBROKER_TEST_BIN_DIR;
}

std::string SourceDir() {
  const char* dir = std::getenv("TOKENBROKER_SOURCE_DIR");
  return dir != nullptr && *dir ? dir : TOKENBROKER_TEST_SOURCE_DIR;
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                             const std::string& cwd, int run_as_uid,
                                                             int run_as_gid) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe failed");
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto proc = std::unique_ptr<Subprocess>(new Subprocess());
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    if (run_as_gid >= 0 && setgid(static_cast<gid_t>(run_as_gid)) != 0) _exit(126);
    if (run_as_uid >= 0 && setuid(static_cast<uid_t>(run_as_uid)) != 0) _exit(126);
    // Die with the test process, however it ends (a crash or exit() skips
    // destructors): no daemon, database or provider may outlive the tests.
    // Set after the uid change, which would clear it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    execve(args[0], args.data(), environ);
    _exit(127);
  }
  proc->pid_ = pid;
  close(out_pipe[1]);
  close(err_pipe[1]);
  proc->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, proc->pid_, 0));
  Subprocess* p = proc.get();
  proc->out_reader_ = std::thread([p, fd = out_pipe[0]] { p->ReadLoop(fd, false); });
  proc->err_reader_ = std::thread([p, fd = err_pipe[0]] { p->ReadLoop(fd, true); });
  return proc;
}

Subprocess::~Subprocess() {
  if (!exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    (void)Wait(absl::Seconds(30));
  }
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
  if (pidfd_ >= 0) close(pidfd_);
}

void Subprocess::ReadLoop(int fd, bool is_stderr) {
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    absl::MutexLock lock(&mu_);
    if (!is_stderr) {
      stdout_.append(buf, static_cast<size_t>(n));
      continue;
    }
    stderr_partial_.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = stderr_partial_.find('\n')) != std::string::npos) {
      stderr_lines_.push_back(stderr_partial_.substr(0, nl));
      stderr_partial_.erase(0, nl + 1);
    }
  }
  close(fd);
  if (!is_stderr) {
    absl::MutexLock lock(&mu_);
    stdout_closed_ = true;
  }
  if (is_stderr) {
    absl::MutexLock lock(&mu_);
    if (!stderr_partial_.empty()) stderr_lines_.push_back(stderr_partial_);
    stderr_partial_.clear();
    stderr_closed_ = true;
  }
}

std::optional<std::string> Subprocess::WaitForStderrLine(const std::function<bool(const std::string&)>& match,
                                                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  size_t checked = 0;
  std::optional<std::string> found;
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (; checked < stderr_lines_.size(); ++checked) {
      if (match(stderr_lines_[checked])) {
        found = stderr_lines_[checked];
        return true;
      }
    }
    return stderr_closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return found;
}

void Subprocess::Signal(int signal) { kill(pid_, signal); }

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  if (exit_code_.has_value()) return *exit_code_;
  if (pidfd_ >= 0) {
    pollfd pfd{pidfd_, POLLIN, 0};
    int rc;
    do {
      rc = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return absl::DeadlineExceededError("process still running");
  }
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return absl::InternalError("waitpid failed");
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
  return *exit_code_;
}

std::string Subprocess::WaitForStdout(const std::function<bool(const std::string&)>& match,
                                      absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stdout_closed_ || match(stdout_); };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return stdout_;
}

std::string Subprocess::Stdout() {
  absl::MutexLock lock(&mu_);
  return stdout_;
}

std::string Subprocess::Stderr() {
  absl::MutexLock lock(&mu_);
  std::string all;
  for (const std::string& line : stderr_lines_) absl::StrAppend(&all, line, "\n");
  return all + stderr_partial_;
}

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout, int run_as_uid,
                         int run_as_gid) {
  CommandResult result;
  absl::StatusOr<std::unique_ptr<Subprocess>> proc = Subprocess::Start(argv, "", run_as_uid, run_as_gid);
  if (!proc.ok()) {
    result.err = std::string(proc.status().message());
    return result;
  }
  absl::StatusOr<int> code = (*proc)->Wait(timeout);
  if (!code.ok()) {
    (*proc)->Signal(SIGKILL);
    code = (*proc)->Wait(absl::Seconds(10));
  }
  result.exit_code = code.ok() ? *code : -1;
  result.out = (*proc)->Stdout();
  result.err = (*proc)->Stderr();
  return result;
}

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string body;
  const std::string url = absl::StrCat("http://", address, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* user) -> size_t {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return absl::UnavailableError(absl::StrCat("GET ", url, ": ", curl_easy_strerror(rc)));
  if (status != 200) return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", status));
  return body;
}

CertificateFiles MakeSelfSignedCertificate(const TempDir& dir, const std::string& name, int days,
                                           const std::string& key_type, const std::string& san) {
  CertificateFiles files{dir.File(name + ".crt"), dir.File(name + ".key")};
  const std::string newkey = key_type == "ec" ? "ec" : "rsa:2048";
  std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-x509", "-newkey", newkey};
  if (key_type == "ec") {
    argv = {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"};
  }
  for (const std::string& a : {std::string("-nodes"), std::string("-keyout"), files.private_key, std::string("-out"),
                               files.certificate, std::string("-days"), std::to_string(days), std::string("-subj"),
                               "/CN=" + name + "/O=tokenbroker tests"}) {
    argv.push_back(a);
  }
  if (!san.empty()) {
    argv.push_back("-addext");
    argv.push_back("subjectAltName=" + san);
  }
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) std::abort();
  return files;
}

CertificateFiles MakeCertificateAuthority(const TempDir& dir, const std::string& name) {
  CertificateFiles files{dir.File(name + ".crt"), dir.File(name + ".key")};
  CommandResult r = RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                files.private_key, "-out", files.certificate, "-days", "30", "-subj",
                                "/CN=" + name + "/O=tokenbroker tests", "-addext",
                                "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  if (r.exit_code != 0) std::abort();
  return files;
}

CertificateFiles MakeSignedCertificate(const TempDir& dir, const std::string& name, const CertificateFiles& ca,
                                       const std::string& san, bool client) {
  CertificateFiles files{dir.File(name + ".crt"), dir.File(name + ".key")};
  const std::string csr = dir.File(name + ".csr");
  // No SAN at all when `san` is empty (a certificate known by its CN only).
  const std::string ext =
      dir.WriteFile(name + ".ext", absl::StrCat(san.empty() ? "" : absl::StrCat("subjectAltName=", san, "\n"),
                                                "extendedKeyUsage=", client ? "clientAuth" : "serverAuth", "\n"));
  CommandResult req = RunCommand({"/usr/bin/openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                  files.private_key, "-out", csr, "-subj", "/CN=" + name + "/O=tokenbroker tests"});
  CommandResult sign =
      RunCommand({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", ca.certificate, "-CAkey", ca.private_key,
                  "-CAcreateserial", "-days", "30", "-out", files.certificate, "-extfile", ext});
  if (req.exit_code != 0 || sign.exit_code != 0) std::abort();
  return files;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint64_t ProcessStatusBytes(pid_t pid, absl::string_view field) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, field) || line.size() <= field.size() || line[field.size()] != ':') continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t kb = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kb)) return kb * 1024;
  }
  return 0;
}

uint64_t PeakResidentBytes(pid_t pid) { return ProcessStatusBytes(pid, "VmHWM"); }

uint64_t ResidentBytes(pid_t pid) { return ProcessStatusBytes(pid, "VmRSS"); }

void ResetPeakResident(pid_t pid) {
  std::ofstream clear(absl::StrCat("/proc/", pid, "/clear_refs"));
  clear << "5";
}

int ThreadsNamed(pid_t pid, absl::string_view name) {
  int n = 0;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    n += comm == name;
  }
  return n;
}

std::map<std::string, std::string> ParseForm(const std::string& body) {
  auto decode = [](absl::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out.push_back(' ');
      } else if (s[i] == '%' && i + 2 < s.size()) {
        out += absl::HexStringToBytes(s.substr(i + 1, 2));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    }
    return out;
  };
  std::map<std::string, std::string> form;
  for (absl::string_view pair : absl::StrSplit(body, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    form[decode(kv.first)] = decode(kv.second);
  }
  return form;
}

std::string JsonField(const std::string& line, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":\"");
  size_t start = line.find(needle);
  if (start == std::string::npos) return "";
  start += needle.size();
  size_t end = line.find('"', start);
  return end == std::string::npos ? "" : line.substr(start, end - start);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int ListenOnLoopback(int port, int* bound_port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *bound_port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace tokenbroker::testing
