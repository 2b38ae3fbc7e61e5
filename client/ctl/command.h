// tokenbrokerctl's command tree, dispatch and help. RunCtl is the whole CLI as
// a function of its arguments, so tests run it in-process.
#ifndef TOKENBROKER_CLIENT_CTL_COMMAND_H_
#define TOKENBROKER_CLIENT_CTL_COMMAND_H_

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/broker_client.h"
#include "client/ctl/flags.h"
#include "google/protobuf/message.h"

namespace tokenbroker::ctl {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the broker answered with an error, or is not serving
inline constexpr int kExitUsage = 2;    // the command line is wrong

enum class OutputFormat { kText, kJson };

// What every command gets: the global options, the output streams and a client
// created on first use.
class Context {
 public:
  Context(ClientOptions options, OutputFormat format, std::ostream& out, std::ostream& err)
      : options_(std::move(options)), format_(format), out_(out), err_(err) {}

  absl::StatusOr<BrokerClient*> Client();
  OutputFormat format() const { return format_; }
  // The --timeout of each call.
  absl::Duration timeout() const { return options_.timeout; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // Prints a message as JSON (proto field names) or as text.
  void PrintMessage(const google::protobuf::Message& message);
  // Prints "tokenbrokerctl: CODE: message" and returns kExitFailure.
  int Fail(const absl::Status& status);

 private:
  ClientOptions options_;
  OutputFormat format_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<BrokerClient> client_;
};

struct Command {
  std::string name;
  // One line, shown in the parent's list.
  std::string summary;
  // Shown by --help: what it does, arguments, examples.
  std::string description;
  // Usage after "tokenbrokerctl <path>", for example "GRANT [flags]".
  std::string usage;
  // Declares the leaf's flags; the targets live in the run closure's state.
  std::function<void(FlagSet&)> flags;
  // Runs a leaf with its positional arguments (flags already parsed).
  std::function<int(Context&, const std::vector<std::string>& args)> run;
  std::vector<Command> children;
};

// The root of the command tree.
Command RootCommand();

// Runs tokenbrokerctl. `args` excludes the program name. `getenv` reads
// environment variables (TOKENBROKER_TARGET).
int RunCtl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const std::function<const char*(const char*)>& getenv);

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_COMMAND_H_
