// Helpers shared by tokenbrokerctl's command groups.
#ifndef TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_
#define TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_

#include <functional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
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

// Prints a grant for people (vault_commands.cc).
void PrintGrant(const v1::Grant& grant, std::ostream& out);
// Parses --label KEY=VALUE flags into `out`; INVALID_ARGUMENT naming --label.
absl::Status ParseLabels(const std::vector<std::string>& labels, google::protobuf::Map<std::string, std::string>* out);

// Command groups defined in vault_commands.cc.
Command AppCommand();
Command GrantCommand();
Command KeysCommand();
// Defined in consent_commands.cc.
Command ConsentCommand();
// Defined in mail_commands.cc.
Command MailCommand();

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_COMMAND_UTIL_H_
