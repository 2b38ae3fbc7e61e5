// Helpers shared by tokenbrokerctl's command groups.
#ifndef TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_
#define TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/ctl/command.h"
#include "service/common/secret.h"

namespace tokenbroker::ctl {

// Prints a usage error for `path` and returns kExitUsage.
int WrongArgs(Context& ctx, const std::string& path, const std::string& what);

// Reads a secret from FILE, or from standard input for "-". Trailing newlines
// are dropped (editors and `echo` add them). INVALID_ARGUMENT naming `flag`.
absl::StatusOr<Secret> ReadSecretInput(const std::string& flag, const std::string& path);
// Reads a non-secret file (certificates).
absl::StatusOr<std::string> ReadInputFile(const std::string& flag, const std::string& path);

// Calls a unary AdminService method and prints the response: as JSON with
// --output json, else with `text` (or the proto text format when null).
template <typename Request, typename Response>
int CallAdmin(Context& ctx, const Request& request,
              grpc::Status (v1::AdminService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
              const std::function<void(const Response&, std::ostream&)>& text = nullptr) {
  absl::StatusOr<BrokerClient*> client = ctx.Client();
  if (!client.ok()) return ctx.Fail(client.status());
  Response response;
  auto context = (*client)->NewContext();
  grpc::Status status = ((*client)->admin().*method)(context.get(), request, &response);
  if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
  if (text && ctx.format() == OutputFormat::kText) {
    text(response, ctx.out());
  } else {
    ctx.PrintMessage(response);
  }
  return kExitOk;
}

// `text` in a column of `width` characters (UTF-8 code points, not bytes):
// cut at a character boundary, padded with spaces; control characters as "?".
std::string FitColumn(absl::string_view text, size_t width);
// A folder (or other) name for text output: as it is, or quoted with
// escapes when it has leading or trailing spaces, a quote first, or control
// characters, so that what is printed can be told apart and typed back.
std::string DisplayName(absl::string_view name);
// Sorted UIDs as IMAP sequence ranges: 3,7:9,12.
std::string UidRanges(const std::vector<uint32_t>& sorted_uids);

// Progress of long CLI work, for a person at a terminal: "3.1 MB of 50.0 MB,
// 8.2 MB/s, 6s left" (bytes), or "120 of 500 messages, 3.1 MB, 8.2 MB/s, 9s
// left" when `messages_total` is set; the parts not known are left out.
std::string ProgressText(uint64_t bytes, uint64_t bytes_total, uint64_t messages, uint64_t messages_total,
                         absl::Duration elapsed);
// A progress line on standard error, redrawn at most 5 times a second; only
// when standard error is a terminal and --quiet was not given. Cleared when
// done.
class ProgressLine {
 public:
  ProgressLine(std::ostream& err, bool enabled) : err_(err), enabled_(enabled), start_(absl::Now()) {}
  ~ProgressLine() { Clear(); }
  void Update(uint64_t bytes, uint64_t bytes_total, uint64_t messages = 0, uint64_t messages_total = 0);
  void Clear();

 private:
  std::ostream& err_;
  const bool enabled_;
  const absl::Time start_;
  absl::Time drawn_ = absl::InfinitePast();
  size_t width_ = 0;
};
// Whether progress lines are wanted: standard error is a terminal.
bool StderrIsTerminal();

// Prints a grant for people (vault_commands.cc).
void PrintGrant(const v1::Grant& grant, std::ostream& out);
// Parses --label KEY=VALUE flags into `out`; INVALID_ARGUMENT naming --label.
absl::Status ParseLabels(const std::vector<std::string>& labels, google::protobuf::Map<std::string, std::string>* out);

// Command groups defined in vault_commands.cc.
Command AppCommand();
Command GrantCommand();
Command DiagnoseCommand();
Command KeysCommand();
// Defined in consent_commands.cc.
Command ConsentCommand();
// Defined in mail_commands.cc.
Command MailCommand();

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_
