// tokenbrokerctl consent: gives the broker a delegated grant. `begin` runs the
// authorization-code flow with a loopback redirect listener (or, with
// --no-listen, prints the URL for `consent complete`); `device` runs the
// device-code flow and waits while the broker polls.
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "client/ctl/command_util.h"
#include "client/ctl/redirect_listener.h"

namespace tokenbroker::ctl {
namespace {

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// The grant flags shared by `begin` and `device`.
struct GrantFlags {
  std::string app, mailbox;
  std::vector<std::string> scopes, labels;
  void Declare(FlagSet& f) {
    f.String("app", &app, "APP", "the app the grant belongs to");
    f.String("mailbox", &mailbox, "ADDRESS", "the mailbox (the SASL user name)");
    f.StringList("scope", &scopes, "SCOPE", "a scope (default: the provider's IMAP scopes with offline_access)");
    f.StringList("label", &labels, "KEY=VALUE", "a label");
  }
  absl::StatusOr<v1::Grant> Build(const std::string& id) const {
    v1::Grant grant;
    grant.set_id(id);
    grant.set_app(app);
    grant.set_mailbox(mailbox);
    grant.set_kind(v1::GRANT_KIND_DELEGATED);
    for (const std::string& scope : scopes) grant.add_scopes(scope);
    if (absl::Status l = ParseLabels(labels, grant.mutable_labels()); !l.ok()) return l;
    return grant;
  }
};

int Complete(Context& ctx, const std::string& state, const std::string& code) {
  v1::CompleteAuthorizationRequest request;
  request.set_state(state);
  request.set_code(code);
  int rc = CallAdmin<v1::CompleteAuthorizationRequest, v1::Grant>(
      ctx, request, &v1::AdminService::Stub::CompleteAuthorization, PrintGrant);
  WipeString(*request.mutable_code());
  return rc;
}

Command ConsentBegin() {
  struct State {
    GrantFlags grant;
    std::string listen = "127.0.0.1:0", redirect_uri, login_hint, prompt;
    bool no_listen = false;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "begin";
  c.summary = "consent with the authorization-code flow (a browser sign-in)";
  c.description =
      "Starts the authorization-code flow with PKCE for GRANT and prints the URL to open in a browser.\n"
      "tokenbrokerctl listens on a loopback address for the provider's redirect (--listen, default\n"
      "127.0.0.1 on a free port) and completes the consent when it arrives: the broker redeems the code\n"
      "and keeps the refresh token. Register http://127.0.0.1 (Microsoft ignores the port of loopback\n"
      "redirect URIs) or the exact --redirect-uri with the app at the provider.\n"
      "On a machine without a browser use --no-listen: open the URL elsewhere, then pass the address the\n"
      "browser was sent to (it will not load) to `tokenbrokerctl consent complete --url URL`.\n"
      "The same command re-consents an existing delegated grant (the old refresh token keeps working\n"
      "until the new one is stored).";
  c.usage = "GRANT --app APP --mailbox ADDRESS [--scope S]... [--listen HOST:PORT] [--redirect-uri URI] "
            "[--login-hint USER] [--prompt consent|login|select_account] [--no-listen]";
  c.flags = [s](FlagSet& f) {
    s->grant.Declare(f);
    f.String("listen", &s->listen, "HOST:PORT", "where to receive the redirect (loopback only; port 0: any free)");
    f.String("redirect-uri", &s->redirect_uri, "URI", "the redirect URI (default: http://HOST:PORT/ of --listen)");
    f.String("login-hint", &s->login_hint, "USER", "pre-fill the sign-in name (default: the mailbox)");
    f.String("prompt", &s->prompt, "PROMPT", "consent, login, select_account or none");
    f.Bool("no-listen", &s->no_listen, "only print the URL and state; finish with `consent complete --url`");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "consent begin", "expected exactly one GRANT id");
    absl::StatusOr<v1::Grant> grant = s->grant.Build(args[0]);
    if (!grant.ok()) return WrongArgs(ctx, "consent begin", std::string(grant.status().message()));
    std::unique_ptr<RedirectListener> listener;
    std::string redirect_uri = s->redirect_uri;
    if (!s->no_listen) {
      const size_t colon = s->listen.rfind(':');
      int port = -1;
      if (colon == std::string::npos || !absl::SimpleAtoi(s->listen.substr(colon + 1), &port)) {
        return WrongArgs(ctx, "consent begin", "--listen: expected HOST:PORT, for example 127.0.0.1:0");
      }
      const std::string host = s->listen.substr(0, colon);
      absl::StatusOr<std::unique_ptr<RedirectListener>> listening = RedirectListener::Listen(host, port);
      if (!listening.ok()) {
        if (absl::IsInvalidArgument(listening.status())) {
          return WrongArgs(ctx, "consent begin", std::string(listening.status().message()));
        }
        return ctx.Fail(listening.status());
      }
      listener = *std::move(listening);
      if (redirect_uri.empty()) redirect_uri = absl::StrCat("http://", host, ":", listener->port(), "/");
    } else if (redirect_uri.empty()) {
      return WrongArgs(ctx, "consent begin", "--no-listen needs --redirect-uri (the one registered with the app)");
    }
    v1::BeginAuthorizationRequest request;
    *request.mutable_grant() = *grant;
    request.set_redirect_uri(redirect_uri);
    request.set_login_hint(s->login_hint.empty() ? s->grant.mailbox : s->login_hint);
    request.set_prompt(s->prompt);
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    v1::BeginAuthorizationResponse started;
    {
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().BeginAuthorization(context.get(), request, &started);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    }
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(started);
    } else {
      ctx.out() << "Open this URL in a browser and sign in as " << grant->mailbox() << ":\n\n  "
                << started.authorization_url() << "\n\n";
      if (s->no_listen) {
        ctx.out() << "Then run: tokenbrokerctl consent complete --url 'ADDRESS THE BROWSER WAS SENT TO'\n";
      }
    }
    ctx.out().flush();
    if (s->no_listen) return kExitOk;
    ctx.err() << "Waiting for the sign-in at " << redirect_uri << " ...\n";
    const absl::Time deadline = ToTime(started.expire_time());
    while (true) {
      absl::StatusOr<RedirectRequest> redirect = listener->Next(deadline);
      if (!redirect.ok()) return ctx.Fail(redirect.status());
      auto& q = redirect->query;
      if (q["state"] != started.state()) {
        listener->Respond(400, "Unexpected sign-in", "This redirect does not belong to the consent that is waiting.");
        continue;
      }
      if (!q["error"].empty()) {
        listener->Respond(400, "Consent failed", q["error"] + ": " + q["error_description"]);
        return ctx.Fail(absl::FailedPreconditionError(
            absl::StrCat("the identity provider answered ", q["error"], ": ", q["error_description"])));
      }
      if (q["code"].empty()) {
        listener->Respond(400, "Consent failed", "The redirect carries no code.");
        continue;
      }
      const int rc = Complete(ctx, started.state(), q["code"]);
      WipeString(q["code"]);
      if (rc == kExitOk) {
        listener->Respond(200, "Consent complete",
                          "tokenbroker now holds the grant " + grant->id() + ". You can close this window.");
      } else {
        listener->Respond(400, "Consent failed", "See tokenbrokerctl's output for the reason.");
      }
      return rc;
    }
  };
  return c;
}

Command ConsentComplete() {
  struct State {
    std::string url, state, code_file;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "complete";
  c.summary = "finish an authorization-code consent started with --no-listen";
  c.description =
      "Finishes a consent started with `consent begin --no-listen`: pass the whole address the browser was\n"
      "sent to after the sign-in (--url), or its state and a file with the code. The state is single-use\n"
      "(with several replicas on PostgreSQL, any replica completes it).";
  c.usage = "--url URL | --state STATE --code-file FILE|-";
  c.flags = [s](FlagSet& f) {
    f.String("url", &s->url, "URL", "the redirect address with ?code=...&state=...");
    f.String("state", &s->state, "STATE", "the state printed by `consent begin --no-listen`");
    f.String("code-file", &s->code_file, "FILE", "read the code from FILE, or - for stdin");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (!args.empty()) return WrongArgs(ctx, "consent complete", "takes no arguments");
    if (!s->url.empty()) {
      std::map<std::string, std::string> q = ParseQuery(s->url);
      if (!q["error"].empty()) {
        return ctx.Fail(absl::FailedPreconditionError(
            absl::StrCat("the identity provider answered ", q["error"], ": ", q["error_description"])));
      }
      if (q["code"].empty() || q["state"].empty()) {
        return WrongArgs(ctx, "consent complete", "--url: the address has no code and state parameters");
      }
      const int rc = Complete(ctx, q["state"], q["code"]);
      WipeString(q["code"]);
      return rc;
    }
    if (s->state.empty() || s->code_file.empty()) {
      return WrongArgs(ctx, "consent complete", "expected --url, or --state and --code-file");
    }
    absl::StatusOr<Secret> code = ReadSecretInput("--code-file", s->code_file);
    if (!code.ok()) return WrongArgs(ctx, "consent complete", std::string(code.status().message()));
    return Complete(ctx, s->state, std::string(code->Reveal()));
  };
  return c;
}

Command ConsentDevice() {
  struct State {
    GrantFlags grant;
    bool no_wait = false;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "device";
  c.summary = "consent with the device-code flow (sign in on any other device)";
  c.description =
      "Starts the device-code flow for GRANT and prints the code and the address where someone signs in\n"
      "as the mailbox's user, on any device. The broker polls the provider; tokenbrokerctl waits until the\n"
      "grant is active (exit 0), or the sign-in is declined or the code expires (exit 1 with the reason).\n"
      "With --no-wait it returns at once; `tokenbrokerctl grant show GRANT` shows the progress.";
  c.usage = "GRANT --app APP --mailbox ADDRESS [--scope S]... [--no-wait]";
  c.flags = [s](FlagSet& f) {
    s->grant.Declare(f);
    f.Bool("no-wait", &s->no_wait, "return once the code is shown");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "consent device", "expected exactly one GRANT id");
    absl::StatusOr<v1::Grant> grant = s->grant.Build(args[0]);
    if (!grant.ok()) return WrongArgs(ctx, "consent device", std::string(grant.status().message()));
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    v1::StartDeviceAuthorizationRequest request;
    *request.mutable_grant() = *grant;
    v1::StartDeviceAuthorizationResponse started;
    {
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().StartDeviceAuthorization(context.get(), request, &started);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    }
    // What the grant looked like at the start: consent or a new error after
    // this moment is the outcome.
    v1::GetGrantRequest get;
    get.set_id(started.grant());
    v1::Grant before;
    {
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().GetGrant(context.get(), get, &before);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    }
    if (ctx.format() == OutputFormat::kJson) {
      ctx.PrintMessage(started);
    } else {
      ctx.out() << (started.message().empty()
                        ? absl::StrCat("To sign in, open ", started.verification_uri(), " and enter the code ",
                                       started.user_code(), ".")
                        : started.message())
                << "\n";
    }
    ctx.out().flush();
    if (s->no_wait) return kExitOk;
    ctx.err() << "Waiting for the sign-in (the code expires at "
              << absl::FormatTime("%H:%M:%S UTC", ToTime(started.expire_time()), absl::UTCTimeZone()) << ") ...\n";
    const absl::Duration interval =
        std::max(absl::Seconds(1), absl::Seconds(started.interval().seconds()));
    const absl::Time give_up = ToTime(started.expire_time()) + interval * 2;
    while (absl::Now() < give_up) {
      absl::SleepFor(interval);
      v1::Grant now;
      auto context = (*client)->NewContext();
      grpc::Status status = (*client)->admin().GetGrant(context.get(), get, &now);
      if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
      if (now.consent_time().SerializeAsString() != before.consent_time().SerializeAsString() &&
          now.state() == v1::GRANT_STATE_ACTIVE) {
        if (ctx.format() == OutputFormat::kText) {
          PrintGrant(now, ctx.out());
        } else {
          ctx.PrintMessage(now);
        }
        return kExitOk;
      }
      if (now.last_error().time().SerializeAsString() != before.last_error().time().SerializeAsString()) {
        return ctx.Fail(absl::FailedPreconditionError(
            absl::StrCat("consent for grant \"", now.id(), "\" failed: ", now.last_error().message())));
      }
    }
    return ctx.Fail(absl::DeadlineExceededError("the device code expired before the sign-in was seen"));
  };
  return c;
}

}  // namespace

Command ConsentCommand() {
  Command c;
  c.name = "consent";
  c.summary = "give the broker a delegated grant (authorization code or device code)";
  c.description =
      "A user (or an admin, for a shared mailbox) signs in once; the broker keeps the refresh token and\n"
      "reads the mailbox until consent is revoked or the refresh token dies. `begin` uses a browser on\n"
      "this machine (or prints the URL for another one), `device` a code entered on any device.";
  c.children = {ConsentBegin(), ConsentComplete(), ConsentDevice()};
  return c;
}

}  // namespace tokenbroker::ctl
