// The commands of tokenbrokerctl. One group per capability; a group's verbs
// call the broker's RPCs and print what comes back.
#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/ctl/command.h"
#include "client/ctl/command_util.h"
#include "google/protobuf/util/time_util.h"
#include "tokenbroker/version.h"

namespace tokenbroker::ctl {
namespace {

using grpc::health::v1::HealthCheckResponse;

Command HealthCommand() {
  auto service = std::make_shared<std::string>();
  Command c;
  c.name = "health";
  c.summary = "check that the broker is serving";
  c.description =
      "Asks the broker's gRPC health service. Prints SERVING and exits 0 when the broker has finished\n"
      "starting and is not draining; prints the status and exits 1 otherwise.";
  c.usage = "[--service NAME]";
  c.flags = [service](FlagSet& f) { f.String("service", service.get(), "NAME", "a service name (default: the server)"); };
  c.run = [service](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "health", "takes no arguments");
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<HealthCheckResponse::ServingStatus> status = (*client)->CheckHealth(*service);
    if (!status.ok()) return ctx.Fail(status.status());
    const std::string name = HealthCheckResponse::ServingStatus_Name(*status);
    if (ctx.format() == OutputFormat::kJson) {
      ctx.out() << "{\"status\": \"" << name << "\"}\n";
    } else {
      ctx.out() << name << "\n";
    }
    return *status == HealthCheckResponse::SERVING ? kExitOk : kExitFailure;
  };
  return c;
}

Command VersionCommand() {
  Command c;
  c.name = "version";
  c.summary = "print the versions of tokenbrokerctl and of the broker";
  c.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "version", "takes no arguments");
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    absl::StatusOr<v1::ServerInfo> info = (*client)->GetServerInfo();
    if (!info.ok()) return ctx.Fail(info.status());
    if (ctx.format() == OutputFormat::kJson) {
      std::string server;
      google::protobuf::util::JsonPrintOptions options;
      options.preserve_proto_field_names = true;
      options.always_print_primitive_fields = true;
      (void)google::protobuf::util::MessageToJsonString(*info, &server, options);
      ctx.out() << "{\"client\": {\"version\": \"" << kVersion << "\", \"revision\": \"" << kRevision
                << "\"}, \"server\": " << server << "}\n";
    } else {
      ctx.out() << "client: tokenbrokerctl " << kVersion << (kRevision[0] ? absl::StrCat(" (", kRevision, ")") : "")
                << "\nserver: tokenbrokerd " << info->version()
                << (info->revision().empty() ? "" : absl::StrCat(" (", info->revision(), ")")) << ", store "
                << info->store() << ", active key " << info->active_key_id() << ", up since "
                << google::protobuf::util::TimeUtil::ToString(info->start_time()) << "\n";
    }
    return kExitOk;
  };
  return c;
}

Command TokenCommand() {
  struct State {
    absl::Duration min_valid = absl::Minutes(5);
    bool sasl = false;
  };
  auto state = std::make_shared<State>();
  Command get;
  get.name = "get";
  get.summary = "print an access token for a grant";
  get.description =
      "Prints an access token for GRANT that stays valid for at least --min-valid. With --sasl, prints\n"
      "the ready SASL XOAUTH2 string instead. With --output json, prints the whole response (token,\n"
      "expiry, mailbox, scopes). The token is a secret: do not paste it into tickets or logs.";
  get.usage = "GRANT [--min-valid DURATION] [--sasl]";
  get.flags = [state](FlagSet& f) {
    f.Duration("min-valid", &state->min_valid, "the token must stay valid this long (default 5m)");
    f.Bool("sasl", &state->sasl, "print the SASL XOAUTH2 initial response instead of the token");
  };
  get.run = [state](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "token get", "expected exactly one GRANT");
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    v1::GetAccessTokenRequest request;
    request.set_grant(args[0]);
    *request.mutable_min_valid_for() =
        google::protobuf::util::TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(state->min_valid));
    absl::StatusOr<v1::GetAccessTokenResponse> response = (*client)->GetAccessToken(request);
    if (!response.ok()) return ctx.Fail(response.status());
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(*response);
    } else {
      ctx.out() << (state->sasl ? response->sasl_xoauth2() : response->access_token()) << "\n";
    }
    return kExitOk;
  };
  Command c;
  c.name = "token";
  c.summary = "get access tokens";
  c.children.push_back(get);
  return c;
}

Command AuditCommand() {
  struct State {
    std::string caller, action, grant, result, page_token;
    int limit = 100;
    absl::Duration since = absl::ZeroDuration();
  };
  auto state = std::make_shared<State>();
  Command list;
  list.name = "list";
  list.summary = "list audit events, newest first";
  list.description =
      "Lists audit events, newest first, as a table (or JSON with --output json). More than one page of\n"
      "the broker's (at most 1000) is followed until --limit events; when more are left, the command says\n"
      "how to go on with --page-token.";
  list.usage =
      "[--caller ID] [--action ACTION] [--grant GRANT] [--result CODE] [--since DURATION] [--limit N] "
      "[--page-token TOKEN]";
  list.flags = [state](FlagSet& f) {
    f.String("caller", &state->caller, "ID", "only events of this caller");
    f.String("action", &state->action, "ACTION", "token.get, mail.read, admin.read, admin.write or consent");
    f.String("grant", &state->grant, "GRANT", "only events about this grant");
    f.String("result", &state->result, "CODE", "only events with this result (OK, PERMISSION_DENIED, ...)");
    f.Duration("since", &state->since, "only events of the last DURATION (for example 1h, 30m)");
    f.Int("limit", &state->limit, "N", "at most N events (default 100), over as many pages as it takes");
    f.String("page-token", &state->page_token, "TOKEN", "go on from where a previous list stopped");
  };
  list.run = [state](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "audit list", "takes no arguments");
    if (state->limit < 1 || state->limit > 1000000) return WrongArgs(ctx, "audit list", "--limit must be 1-1000000");
    if (state->since < absl::ZeroDuration()) return WrongArgs(ctx, "audit list", "--since must not be negative");
    v1::ListAuditEventsRequest request;
    request.set_caller(state->caller);
    request.set_action(state->action);
    request.set_grant(state->grant);
    request.set_result(state->result);
    request.set_page_token(state->page_token);
    if (state->since > absl::ZeroDuration()) {
      *request.mutable_since() =
          google::protobuf::util::TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(absl::Now() - state->since));
    }
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    v1::ListAuditEventsResponse all;
    while (true) {
      request.set_page_size(static_cast<uint32_t>(std::min(1000, state->limit - all.events_size())));
      v1::ListAuditEventsResponse page;
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().ListAuditEvents(context.get(), request, &page);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
      for (v1::AuditEvent& e : *page.mutable_events()) *all.add_events() = std::move(e);
      all.set_next_page_token(page.next_page_token());
      if (page.next_page_token().empty() || all.events_size() >= state->limit) break;
      request.set_page_token(page.next_page_token());
    }
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(all);
      return kExitOk;
    }
    std::ostream& out = ctx.out();
    out << absl::StrFormat("%-20s %-20s %-12s %-40s %-20s %-20s %s\n", "TIME", "CALLER", "ACTION", "METHOD", "GRANT",
                           "RESULT", "DETAIL");
    for (const v1::AuditEvent& e : all.events()) {
      const absl::Time t = absl::FromUnixSeconds(e.time().seconds());
      absl::string_view method = e.method();
      absl::ConsumePrefix(&method, "/tokenbroker.v1.");
      out << FitColumn(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()), 20) << " "
          << FitColumn(e.caller(), 20) << " " << FitColumn(e.action(), 12) << " " << FitColumn(method, 40) << " "
          << FitColumn(e.grant().empty() ? "-" : e.grant(), 20) << " " << FitColumn(e.result(), 20) << " "
          << e.detail() << "\n";
    }
    if (!all.next_page_token().empty()) {
      ctx.err() << "more events: add --page-token " << all.next_page_token() << "\n";
    }
    return kExitOk;
  };
  Command c;
  c.name = "audit";
  c.summary = "read the audit trail";
  c.children.push_back(list);
  return c;
}

}  // namespace

Command RootCommand() {
  Command root;
  root.name = "";
  root.summary = "tokenbrokerctl talks to a tokenbroker daemon over gRPC.";
  root.description =
      "tokenbrokerctl talks to a tokenbroker daemon (tokenbrokerd) over gRPC.\n"
      "Errors print the gRPC code and the broker's message and exit 1; a wrong command line exits 2.";
  root.children = {HealthCommand(), VersionCommand(), AppCommand(),  GrantCommand(),   ConsentCommand(),
                   TokenCommand(),  MailCommand(),    KeysCommand(), AuditCommand(), DiagnoseCommand()};
  return root;
}

}  // namespace tokenbroker::ctl
