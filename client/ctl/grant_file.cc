#include "client/ctl/grant_file.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace tokenbroker::ctl {
namespace {

constexpr size_t kMaxLineBytes = 64 * 1024;
constexpr int kMaxParallel = 64;
// A call refused for the caller's rate limit (RESOURCE_EXHAUSTED) is tried
// again after the broker's retry-after-ms, at most this many times.
constexpr int kMaxTries = 20;
constexpr size_t kLinesInSummary = 20;

// The parser's first line with every quoted part left out: its messages
// quote values ("invalid value \"...\"") and its later lines show the input
// around the error, either of which may be a token.
std::string SafeParserMessage(absl::string_view message) {
  message = message.substr(0, message.find('\n'));
  std::string out;
  bool quoted = false;
  for (char c : message) {
    if (c == '"') {
      quoted = !quoted;
      if (quoted) out += "\"...\"";
      continue;
    }
    if (!quoted) out += c;
  }
  return out;
}

// A key is named in a message only if it looks like one (a short word of
// lower-case letters and underscores): a token pasted in the wrong place
// does not.
bool LooksLikeAKey(absl::string_view key) {
  return !key.empty() && key.size() <= 32 &&
         std::all_of(key.begin(), key.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

absl::Status KeyError(absl::string_view key, absl::string_view what) {
  if (!LooksLikeAKey(key)) return absl::InvalidArgumentError(absl::StrCat("a key that is not a word: ", what));
  return absl::InvalidArgumentError(absl::StrCat("\"", key, "\": ", what));
}

absl::StatusOr<std::string> StringValue(absl::string_view key, const google::protobuf::Value& value) {
  if (value.kind_case() != google::protobuf::Value::kStringValue) return KeyError(key, "expected a string");
  return value.string_value();
}

absl::Status Fill(GrantLine& out, absl::string_view key, google::protobuf::Value& value, bool import) {
  v1::Grant& g = out.grant;
  if (key == "grant" || key == "app" || key == "mailbox" || (!import && (key == "kind" || key == "subject"))) {
    absl::StatusOr<std::string> s = StringValue(key, value);
    if (!s.ok()) return s.status();
    if (key == "grant") g.set_id(*s);
    if (key == "app") g.set_app(*s);
    if (key == "mailbox") g.set_mailbox(*s);
    if (key == "subject") g.set_subject(*s);
    if (key == "kind") {
      if (*s == "app_only") {
        g.set_kind(v1::GRANT_KIND_APP_ONLY);
      } else if (*s == "service_account") {
        g.set_kind(v1::GRANT_KIND_SERVICE_ACCOUNT);
      } else {
        return KeyError(key, "expected app_only or service_account");
      }
    }
    return absl::OkStatus();
  }
  if (import && key == "refresh_token") {
    if (value.kind_case() != google::protobuf::Value::kStringValue || value.string_value().empty()) {
      return KeyError(key, "expected the refresh token as a string");
    }
    out.refresh_token = Secret(std::move(*value.mutable_string_value()));
    return absl::OkStatus();
  }
  if (key == "scopes") {
    if (value.kind_case() != google::protobuf::Value::kListValue) return KeyError(key, "expected a list of strings");
    for (const google::protobuf::Value& scope : value.list_value().values()) {
      absl::StatusOr<std::string> s = StringValue(key, scope);
      if (!s.ok()) return KeyError(key, "expected a list of strings");
      g.add_scopes(*s);
    }
    return absl::OkStatus();
  }
  if (key == "labels") {
    if (value.kind_case() != google::protobuf::Value::kStructValue) {
      return KeyError(key, "expected an object of strings");
    }
    for (const auto& [name, label] : value.struct_value().fields()) {
      absl::StatusOr<std::string> s = StringValue(key, label);
      if (!s.ok()) return KeyError(key, "expected an object of strings");
      (*g.mutable_labels())[name] = *s;
    }
    return absl::OkStatus();
  }
  return KeyError(key, import ? "unknown key (expected grant, app, mailbox, refresh_token, scopes or labels)"
                              : "unknown key (expected grant, app, mailbox, kind, subject, scopes or labels)");
}

// Sends `call` and tries again while the broker answers RESOURCE_EXHAUSTED
// with a retry-after-ms (a rate limit on this caller).
grpc::Status CallPaced(BrokerClient& client, absl::Duration timeout,
                       const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  grpc::Status status;
  for (int attempt = 0; attempt < kMaxTries; ++attempt) {
    std::unique_ptr<grpc::ClientContext> context = client.NewContext(timeout);
    status = call(context.get());
    if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return status;
    const auto& trailers = context->GetServerTrailingMetadata();
    auto it = trailers.find("retry-after-ms");
    int64_t ms = 0;
    if (it == trailers.end() || !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms)) {
      return status;  // not a rate limit: the broker is full; say so
    }
    absl::SleepFor(absl::Milliseconds(std::clamp<int64_t>(ms, 1, 10'000)));
  }
  return status;
}

class GrantFileRun {
 public:
  GrantFileRun(Context& ctx, const GrantFileOptions& options, std::istream& in, BrokerClient& client)
      : ctx_(ctx), options_(options), in_(in), client_(client) {}

  int Run() {
    std::vector<std::thread> workers;
    const int parallel = std::clamp(options_.parallel, 1, kMaxParallel);
    for (int i = 0; i < parallel; ++i) workers.emplace_back([this] { Work(); });
    for (std::thread& t : workers) t.join();
    return Summarize();
  }

 private:
  // The next non-blank line and its number; false at the end of the input.
  bool NextLine(std::string* line, int64_t* number) {
    absl::MutexLock lock(&in_mu_);
    while (std::getline(in_, *line)) {
      *number = ++line_number_;
      if (!line->empty() && line->back() == '\r') line->pop_back();
      if (line->find_first_not_of(" \t") != std::string::npos) return true;
    }
    return false;
  }

  void Work() {
    std::string line;
    int64_t number = 0;
    while (NextLine(&line, &number)) {
      absl::StatusOr<GrantLine> grant =
          line.size() > kMaxLineBytes
              ? absl::InvalidArgumentError(absl::StrCat("longer than ", kMaxLineBytes, " bytes"))
              : ParseGrantLine(line, options_.import);
      WipeString(line);
      if (!grant.ok()) {
        Failed(number, "", absl::StatusCodeToString(grant.status().code()), grant.status().message());
        continue;
      }
      const grpc::Status status = Send(*grant);
      if (status.ok()) {
        Done(false);
      } else if (options_.skip_existing && status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        Done(true);
      } else {
        const absl::Status s = FromGrpcStatus(status);
        Failed(number, grant->grant.id(), absl::StatusCodeToString(s.code()), s.message());
      }
    }
  }

  grpc::Status Send(const GrantLine& line) {
    v1::Grant grant_out;
    if (options_.import) {
      v1::ImportGrantRequest request;
      *request.mutable_grant() = line.grant;
      const absl::string_view token = line.refresh_token.Reveal();
      request.set_refresh_token(token.data(), token.size());
      request.set_replace(options_.replace);
      request.set_verify(options_.verify);
      grpc::Status status = CallPaced(client_, ctx_.timeout(), [&](grpc::ClientContext* context) {
        return client_.admin().ImportGrant(context, request, &grant_out);
      });
      WipeString(*request.mutable_refresh_token());
      return status;
    }
    v1::CreateGrantRequest request;
    *request.mutable_grant() = line.grant;
    if (request.grant().kind() == v1::GRANT_KIND_UNSPECIFIED)
      request.mutable_grant()->set_kind(v1::GRANT_KIND_APP_ONLY);
    return CallPaced(client_, ctx_.timeout(), [&](grpc::ClientContext* context) {
      return client_.admin().CreateGrant(context, request, &grant_out);
    });
  }

  void Done(bool existed) {
    absl::MutexLock lock(&out_mu_);
    ++(existed ? existed_ : succeeded_);
  }

  void Failed(int64_t number, absl::string_view grant, absl::string_view code, absl::string_view message) {
    absl::MutexLock lock(&out_mu_);
    failed_lines_.push_back(number);
    ctx_.err() << "tokenbrokerctl: line " << number;
    if (!grant.empty()) ctx_.err() << " (grant \"" << absl::CHexEscape(grant.substr(0, 128)) << "\")";
    ctx_.err() << ": " << code << ": " << message << "\n";
  }

  int Summarize() {
    absl::MutexLock lock(&out_mu_);
    std::sort(failed_lines_.begin(), failed_lines_.end());
    const std::string verb = options_.import ? "imported" : "created";
    if (ctx_.format() == OutputFormat::kJson) {
      ctx_.out() << "{\"" << verb << "\": " << succeeded_ << ", \"already_existed\": " << existed_
                 << ", \"failed\": " << failed_lines_.size() << ", \"failed_lines\": ["
                 << absl::StrJoin(failed_lines_, ", ") << "]}\n";
    } else {
      ctx_.out() << verb << " " << succeeded_ << (succeeded_ == 1 ? " grant" : " grants");
      if (options_.skip_existing) ctx_.out() << ", " << existed_ << " already existed";
      if (!failed_lines_.empty()) {
        std::vector<int64_t> shown(failed_lines_.begin(),
                                   failed_lines_.begin() + std::min(failed_lines_.size(), kLinesInSummary));
        ctx_.out() << ", " << failed_lines_.size() << " failed (line" << (failed_lines_.size() == 1 ? " " : "s ")
                   << absl::StrJoin(shown, ", ") << (failed_lines_.size() > shown.size() ? ", ..." : "") << ")";
      }
      ctx_.out() << "\n";
    }
    return failed_lines_.empty() ? kExitOk : kExitFailure;
  }

  Context& ctx_;
  const GrantFileOptions& options_;
  absl::Mutex in_mu_;
  std::istream& in_ ABSL_GUARDED_BY(in_mu_);
  int64_t line_number_ ABSL_GUARDED_BY(in_mu_) = 0;
  BrokerClient& client_;
  absl::Mutex out_mu_;
  int64_t succeeded_ ABSL_GUARDED_BY(out_mu_) = 0;
  int64_t existed_ ABSL_GUARDED_BY(out_mu_) = 0;
  std::vector<int64_t> failed_lines_ ABSL_GUARDED_BY(out_mu_);
};

}  // namespace

absl::StatusOr<GrantLine> ParseGrantLine(absl::string_view line, bool import) {
  google::protobuf::Struct object;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(google::protobuf::StringPiece(line.data(), line.size()), &object);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a JSON object: ", SafeParserMessage(absl::string_view(parsed.message().data(), parsed.message().size()))));
  }
  GrantLine out;
  absl::Status status;
  for (auto& [key, value] : *object.mutable_fields()) {
    if (status.ok()) status = Fill(out, key, value, import);
    if (value.kind_case() == google::protobuf::Value::kStringValue) WipeString(*value.mutable_string_value());
  }
  if (!status.ok()) return status;
  if (out.grant.id().empty()) return KeyError("grant", "required");
  if (out.grant.app().empty()) return KeyError("app", "required");
  if (out.grant.mailbox().empty()) return KeyError("mailbox", "required");
  if (import && out.refresh_token.Reveal().empty()) return KeyError("refresh_token", "required");
  return out;
}

int EnrolGrantsFromFile(Context& ctx, const GrantFileOptions& options) {
  absl::StatusOr<BrokerClient*> client = ctx.Client();
  if (!client.ok()) return ctx.Fail(client.status());
  if (options.path == "-") return GrantFileRun(ctx, options, std::cin, **client).Run();
  std::ifstream in(options.path);
  if (!in) return ctx.Fail(absl::InvalidArgumentError(absl::StrCat("--from-file: cannot read ", options.path)));
  return GrantFileRun(ctx, options, in, **client).Run();
}

}  // namespace tokenbroker::ctl
