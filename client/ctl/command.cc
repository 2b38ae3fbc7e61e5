#include "client/ctl/command.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "tokenbroker/version.h"

namespace tokenbroker::ctl {
namespace {

constexpr char kProgram[] = "tokenbrokerctl";

struct GlobalOptions {
  std::string target;
  std::string output = "text";
  absl::Duration timeout = absl::Seconds(10);
  bool tls = false;
  std::string ca_file, cert_file, key_file, server_name, token_file;
};

void DeclareGlobalFlags(FlagSet& flags, GlobalOptions& g) {
  flags.String("target", &g.target, "ADDR",
               "broker address (default $TOKENBROKER_TARGET, else 127.0.0.1:50051)");
  flags.String("output", &g.output, "FORMAT", "text (default) or json");
  flags.Duration("timeout", &g.timeout, "deadline of each call (default 10s)");
  flags.Bool("tls", &g.tls, "use TLS with the system's CA roots");
  flags.String("ca-file", &g.ca_file, "FILE", "CA bundle to verify the broker (implies --tls)");
  flags.String("cert-file", &g.cert_file, "FILE", "client certificate for mTLS (implies --tls)");
  flags.String("key-file", &g.key_file, "FILE", "the client certificate's private key");
  flags.String("server-name", &g.server_name, "NAME", "host name expected in the broker's certificate");
  flags.String("token-file", &g.token_file, "FILE", "send the bearer token in FILE with every call");
}

std::string CommandHelp(const Command& command, const std::string& path, const FlagSet* flags,
                        const std::string& global_help) {
  std::string out;
  if (command.children.empty()) {
    absl::StrAppend(&out, "Usage: ", kProgram, " [global flags] ", path, command.usage.empty() ? "" : " ",
                    command.usage, "\n\n");
  } else {
    absl::StrAppend(&out, "Usage: ", kProgram, " [global flags] ", path.empty() ? "" : path + " ",
                    path.empty() ? "COMMAND" : "VERB", " [flags] [args]\n\n");
  }
  absl::StrAppend(&out, command.description.empty() ? command.summary : command.description, "\n");
  if (!command.children.empty()) {
    absl::StrAppend(&out, "\n", path.empty() ? "Commands:" : "Verbs:", "\n");
    for (const Command& child : command.children) {
      absl::StrAppendFormat(&out, "  %-12s %s\n", child.name, child.summary);
    }
  }
  if (flags != nullptr) {
    std::string own = flags->Help();
    if (!own.empty()) absl::StrAppend(&out, "\nFlags:\n", own);
  }
  absl::StrAppend(&out, "\nGlobal flags (before the command):\n", global_help);
  if (!command.children.empty()) {
    absl::StrAppend(&out, "\nRun '", kProgram, " ", path.empty() ? "" : path + " ",
                    path.empty() ? "COMMAND" : "VERB", " --help' for more.\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<BrokerClient*> Context::Client() {
  if (client_ == nullptr) {
    absl::StatusOr<std::unique_ptr<BrokerClient>> client = BrokerClient::Create(options_);
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
  }
  return client_.get();
}

void Context::PrintMessage(const google::protobuf::Message& message) {
  std::string text;
  if (format_ == OutputFormat::kJson) {
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(message, &text, options);
  } else {
    google::protobuf::TextFormat::PrintToString(message, &text);
  }
  out_ << text;
  if (!text.empty() && text.back() != '\n') out_ << "\n";
}

int Context::Fail(const absl::Status& status) {
  err_ << kProgram << ": " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return kExitFailure;
}

int RunCtl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const std::function<const char*(const char*)>& getenv) {
  GlobalOptions g;
  if (const char* env = getenv("TOKENBROKER_TARGET"); env != nullptr && *env != '\0') g.target = env;
  if (g.target.empty()) g.target = "127.0.0.1:50051";
  FlagSet global;
  DeclareGlobalFlags(global, g);
  const std::string global_help = global.Help();

  std::vector<std::string> rest;
  if (absl::Status s = global.Parse(args, /*stop_at_positional=*/true, &rest); !s.ok()) {
    err << kProgram << ": " << s.message() << "\nRun '" << kProgram << " --help' for usage.\n";
    return kExitUsage;
  }
  Command root = RootCommand();
  const Command* command = &root;
  std::string path;
  size_t i = 0;
  // Walk down the tree while the next word names a child.
  while (!command->children.empty() && i < rest.size()) {
    const Command* next = nullptr;
    for (const Command& child : command->children) {
      if (child.name == rest[i]) next = &child;
    }
    if (next == nullptr) {
      if (rest[i] == "--help" || rest[i] == "-h") break;
      err << kProgram << ": unknown " << (path.empty() ? "command" : "verb") << " \"" << rest[i] << "\""
          << (path.empty() ? "" : " for " + path) << "\nRun '" << kProgram << (path.empty() ? "" : " " + path)
          << " --help' for usage.\n";
      return kExitUsage;
    }
    command = next;
    path = path.empty() ? command->name : path + " " + command->name;
    ++i;
  }
  std::vector<std::string> leaf_args(rest.begin() + static_cast<long>(i), rest.end());
  if (global.help_requested() || !command->run) {
    bool asked = global.help_requested();
    for (const std::string& a : leaf_args) asked = asked || a == "--help" || a == "-h";
    out.flush();
    (asked ? out : err) << CommandHelp(*command, path, nullptr, global_help);
    return asked ? kExitOk : kExitUsage;
  }
  FlagSet flags;
  if (command->flags) command->flags(flags);
  std::vector<std::string> positional;
  if (absl::Status s = flags.Parse(leaf_args, /*stop_at_positional=*/false, &positional); !s.ok()) {
    err << kProgram << " " << path << ": " << s.message() << "\nRun '" << kProgram << " " << path
        << " --help' for usage.\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    out << CommandHelp(*command, path, &flags, global_help);
    return kExitOk;
  }
  OutputFormat format;
  if (g.output == "text") {
    format = OutputFormat::kText;
  } else if (g.output == "json") {
    format = OutputFormat::kJson;
  } else {
    err << kProgram << ": --output: expected text or json, not \"" << g.output << "\"\n";
    return kExitUsage;
  }
  ClientOptions options;
  options.target = g.target;
  options.timeout = g.timeout;
  options.use_tls = g.tls;
  options.ca_file = g.ca_file;
  options.cert_file = g.cert_file;
  options.key_file = g.key_file;
  options.server_name = g.server_name;
  options.bearer_token_file = g.token_file;
  Context context(options, format, out, err);
  return command->run(context, positional);
}

}  // namespace tokenbroker::ctl
