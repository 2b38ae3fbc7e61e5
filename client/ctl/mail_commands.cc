// tokenbrokerctl mail: read a grant's mailbox through the broker, which holds
// the token and talks IMAP; the caller never sees a token.
#include <fcntl.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/ctl/command_util.h"
#include "google/protobuf/util/json_util.h"
#include "service/common/json.h"
#include "service/common/time_util.h"

namespace tokenbroker::ctl {
namespace {

std::string When(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(t.seconds()), absl::UTCTimeZone());
}

std::string Who(const google::protobuf::RepeatedPtrField<v1::Address>& addresses) {
  std::vector<std::string> out;
  for (const v1::Address& a : addresses) out.push_back(a.name().empty() ? a.email() : a.name());
  return absl::StrJoin(out, ", ");
}

template <typename Request, typename Response>
int CallMail(Context& ctx, const Request& request,
             grpc::Status (v1::MailService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
             const std::function<void(const Response&, std::ostream&)>& text) {
  absl::StatusOr<BrokerClient*> client = ctx.Client();
  if (!client.ok()) return ctx.Fail(client.status());
  Response response;
  auto context = (*client)->NewContext();
  grpc::Status status = ((*client)->mail().*method)(context.get(), request, &response);
  if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
  if (ctx.format() == OutputFormat::kText) {
    text(response, ctx.out());
  } else {
    ctx.PrintMessage(response);
  }
  return kExitOk;
}

Command MailFolders() {
  Command c;
  c.name = "folders";
  c.summary = "list a grant's mail folders";
  c.usage = "GRANT";
  c.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 1) return WrongArgs(ctx, "mail folders", "expected exactly one GRANT");
    v1::ListFoldersRequest request;
    request.set_grant(args[0]);
    return CallMail<v1::ListFoldersRequest, v1::ListFoldersResponse>(
        ctx, request, &v1::MailService::Stub::ListFolders, [](const v1::ListFoldersResponse& r, std::ostream& out) {
          for (const v1::Folder& f : r.folders()) {
            out << DisplayName(f.name()) << (f.special_use().empty() ? "" : "  " + f.special_use()) << "\n";
          }
        });
  };
  return c;
}

Command MailStatus() {
  Command c;
  c.name = "status";
  c.summary = "message counts and UID state of a folder";
  c.usage = "GRANT FOLDER";
  c.run = [](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 2) return WrongArgs(ctx, "mail status", "expected GRANT and FOLDER");
    v1::GetFolderStatusRequest request;
    request.set_grant(args[0]);
    request.set_folder(args[1]);
    return CallMail<v1::GetFolderStatusRequest, v1::FolderStatus>(
        ctx, request, &v1::MailService::Stub::GetFolderStatus, [](const v1::FolderStatus& s, std::ostream& out) {
          out << absl::StrFormat("%s: %d messages, %d unseen, UIDNEXT %d, UIDVALIDITY %d\n", DisplayName(s.folder()), s.messages(),
                                 s.unseen(), s.uid_next(), s.uid_validity());
        });
  };
  return c;
}

Command MailSearch() {
  struct State {
    std::string since, before, from, to, subject, header;
    bool unseen = false, oldest_first = false;
    int uid_min = 0, uid_max = 0, limit = 100;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "search";
  c.summary = "find messages in a folder and print their summaries";
  c.description =
      "Searches FOLDER of GRANT's mailbox; every given criterion must match. Prints UID, date, sender and\n"
      "subject (decoded), newest first.";
  c.usage = "GRANT FOLDER [--since DATE] [--before DATE] [--from S] [--to S] [--subject S] [--unseen] "
            "[--uid-min N] [--uid-max N] [--header NAME:VALUE] [--limit N] [--oldest-first]";
  c.flags = [s](FlagSet& f) {
    f.String("since", &s->since, "DATE", "internal date on or after DATE (2026-11-27 or RFC 3339)");
    f.String("before", &s->before, "DATE", "internal date before DATE");
    f.String("from", &s->from, "TEXT", "substring of From");
    f.String("to", &s->to, "TEXT", "substring of To");
    f.String("subject", &s->subject, "TEXT", "substring of Subject");
    f.Bool("unseen", &s->unseen, "only messages without \\Seen");
    f.Int("uid-min", &s->uid_min, "N", "lowest UID");
    f.Int("uid-max", &s->uid_max, "N", "highest UID");
    f.String("header", &s->header, "NAME:VALUE", "a header containing VALUE");
    f.Int("limit", &s->limit, "N", "at most N summaries, 1-1000 (default 100)");
    f.Bool("oldest-first", &s->oldest_first, "oldest first instead of newest first");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 2) return WrongArgs(ctx, "mail search", "expected GRANT and FOLDER");
    v1::SearchMessagesRequest request;
    request.set_grant(args[0]);
    request.set_folder(args[1]);
    v1::SearchCriteria* c = request.mutable_criteria();
    for (const auto& [flag, text, field] :
         {std::tuple{"--since", &s->since, c->mutable_since()}, std::tuple{"--before", &s->before, c->mutable_before()}}) {
      if (text->empty()) continue;
      std::optional<absl::Time> t = ParseDateOrTime(*text);
      if (!t.has_value()) return WrongArgs(ctx, "mail search", absl::StrCat(flag, ": expected 2026-11-27 or RFC 3339"));
      field->set_seconds(absl::ToUnixSeconds(*t));
    }
    if (s->since.empty()) c->clear_since();
    if (s->before.empty()) c->clear_before();
    c->set_from(s->from);
    c->set_to(s->to);
    c->set_subject(s->subject);
    c->set_unseen_only(s->unseen);
    if (s->uid_min < 0 || s->uid_max < 0) return WrongArgs(ctx, "mail search", "--uid-min/--uid-max: not negative");
    c->set_uid_min(static_cast<uint32_t>(s->uid_min));
    c->set_uid_max(static_cast<uint32_t>(s->uid_max));
    if (!s->header.empty()) {
      const size_t colon = s->header.find(':');
      if (colon == std::string::npos) return WrongArgs(ctx, "mail search", "--header: expected NAME:VALUE");
      c->mutable_header()->set_name(s->header.substr(0, colon));
      c->mutable_header()->set_value(s->header.substr(colon + 1));
    }
    if (s->limit < 1 || s->limit > 1000) return WrongArgs(ctx, "mail search", "--limit must be 1-1000");
    request.set_limit(static_cast<uint32_t>(s->limit));
    if (s->oldest_first) request.set_order(v1::SearchMessagesRequest::ORDER_OLDEST_FIRST);
    return CallMail<v1::SearchMessagesRequest, v1::SearchMessagesResponse>(
        ctx, request, &v1::MailService::Stub::SearchMessages,
        [](const v1::SearchMessagesResponse& r, std::ostream& out) {
          out << r.total_matches() << " matching (UIDVALIDITY " << r.uid_validity() << ")\n";
          for (const v1::MessageSummary& m : r.messages()) {
            out << absl::StrFormat("%8d  %s  %s  %s\n", m.uid(), When(m.internal_date()), FitColumn(Who(m.from()), 24),
                                   FitColumn(m.subject(), 200));
          }
        });
  };
  return c;
}

// Writes all of `data` to `fd`; false on an error.
bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

Command MailFetch() {
  struct State {
    bool headers = false, quiet = false;
    std::string section, output;
    int uid_validity = 0;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "fetch";
  c.summary = "write one message (or its headers, or one part) to standard output or a file";
  c.description =
      "Streams message UID of FOLDER, exactly as stored, to standard output or --output FILE. Fetching\n"
      "never marks the message as read. --uid-validity refuses the fetch if the folder's UIDs changed.";
  c.usage = "GRANT FOLDER UID [--headers | --section PART] [--uid-validity N] [--output FILE] [--quiet]";
  c.flags = [s](FlagSet& f) {
    f.Bool("headers", &s->headers, "only the header");
    f.String("section", &s->section, "PART", "one body part, numbered as in IMAP (1, 1.2, ...)");
    f.Int("uid-validity", &s->uid_validity, "N", "the folder's UIDVALIDITY the UID belongs to");
    f.String("output", &s->output, "FILE", "write to FILE instead of standard output");
    f.Bool("quiet", &s->quiet, "no progress line (shown on a terminal with --output)");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    int uid = 0;
    if (args.size() != 3 || !absl::SimpleAtoi(args[2], &uid) || uid <= 0) {
      return WrongArgs(ctx, "mail fetch", "expected GRANT, FOLDER and a positive UID");
    }
    if (s->headers && !s->section.empty()) return WrongArgs(ctx, "mail fetch", "--headers and --section exclude each other");
    v1::FetchMessageRequest request;
    request.set_grant(args[0]);
    request.set_folder(args[1]);
    request.set_uid(static_cast<uint32_t>(uid));
    request.set_uid_validity(static_cast<uint32_t>(std::max(0, s->uid_validity)));
    if (s->headers) request.set_part(v1::FetchMessageRequest::PART_HEADERS);
    if (!s->section.empty()) {
      request.set_part(v1::FetchMessageRequest::PART_SECTION);
      request.set_section(s->section);
    }
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    int fd = -1;  // -1: ctx.out()
    if (!s->output.empty()) {
      fd = open(s->output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0) return WrongArgs(ctx, "mail fetch", absl::StrCat("--output: cannot write ", s->output));
    }
    // The broker wants a deadline on every mail call; a large message may
    // take long, so a fetch gets at least an hour.
    std::unique_ptr<grpc::ClientContext> call = (*client)->NewContext(std::max(ctx.timeout(), absl::Hours(1)));
    grpc::ClientContext& context = *call;
    auto reader = (*client)->mail().FetchMessage(&context, request);
    v1::FetchMessageResponse chunk;
    uint64_t written = 0, size = 0;
    bool write_failed = false;
    ProgressLine progress(ctx.err(), fd >= 0 && !s->quiet && StderrIsTerminal());
    while (reader->Read(&chunk)) {
      if (chunk.has_metadata()) size = chunk.metadata().size();
      if (!chunk.has_data()) continue;
      const std::string& data = chunk.data();
      if (fd < 0) {
        ctx.out().write(data.data(), static_cast<std::streamsize>(data.size()));
        if (!ctx.out()) {
          write_failed = true;
          context.TryCancel();
        }
      }
      if (fd >= 0 && !write_failed && !WriteAll(fd, data)) {
        write_failed = true;
        context.TryCancel();
      }
      written += data.size();
      progress.Update(written, size);
    }
    progress.Clear();
    grpc::Status status = reader->Finish();
    if (fd >= 0) close(fd);
    ctx.out().flush();
    if (write_failed) return ctx.Fail(absl::InternalError("writing the message failed"));
    if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    if (!s->output.empty()) ctx.err() << written << " bytes written to " << s->output << "\n";
    return kExitOk;
  };
  return c;
}

// "1:5,9" -> 1,2,3,4,5,9. False for anything else or more than `limit`.
bool ParseUidList(absl::string_view text, size_t limit, std::vector<uint32_t>* uids) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> range = absl::StrSplit(part, absl::MaxSplits(':', 1));
    uint32_t first = 0, last = 0;
    if (!absl::SimpleAtoi(range.first, &first) || first == 0) return false;
    last = first;
    if (!range.second.empty() && (!absl::SimpleAtoi(range.second, &last) || last < first)) return false;
    if (last - first >= limit || uids->size() + (last - first + 1) > limit) return false;
    for (uint32_t uid = first; uid <= last; ++uid) uids->push_back(uid);
  }
  return !uids->empty();
}

Command MailFetchMany() {
  struct State {
    bool headers = false, quiet = false;
    std::string output_dir;
    int uid_validity = 0;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "fetch-many";
  c.summary = "write many messages (up to 1000) to files, in one call";
  c.description =
      "Streams the messages UIDS of FOLDER (for example 1:500,731) with one call and writes each, exactly as\n"
      "stored, to DIR/<uid>.eml. UIDs that do not exist are skipped and listed at the end (\"missing_uids\"\n"
      "with --output json). Fetching never marks mail as read.";
  c.usage = "GRANT FOLDER UIDS --output-dir DIR [--headers] [--uid-validity N] [--quiet]";
  c.flags = [s](FlagSet& f) {
    f.Bool("headers", &s->headers, "only the headers");
    f.Int("uid-validity", &s->uid_validity, "N", "the folder's UIDVALIDITY the UIDs belong to");
    f.String("output-dir", &s->output_dir, "DIR", "an existing directory to write <uid>.eml files to (required)");
    f.Bool("quiet", &s->quiet, "no progress line (shown on a terminal)");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    v1::FetchMessagesRequest request;
    std::vector<uint32_t> uids;
    if (args.size() != 3 || !ParseUidList(args[2], 1000, &uids)) {
      return WrongArgs(ctx, "mail fetch-many", "expected GRANT, FOLDER and 1-1000 UIDs such as 1:500,731");
    }
    if (s->output_dir.empty()) return WrongArgs(ctx, "mail fetch-many", "--output-dir DIR is required");
    request.set_grant(args[0]);
    request.set_folder(args[1]);
    for (uint32_t uid : uids) request.add_uids(uid);
    request.set_uid_validity(static_cast<uint32_t>(std::max(0, s->uid_validity)));
    if (s->headers) request.set_part(v1::FetchMessageRequest::PART_HEADERS);
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    std::unique_ptr<grpc::ClientContext> context = (*client)->NewContext(std::max(ctx.timeout(), absl::Hours(1)));
    auto reader = (*client)->mail().FetchMessages(context.get(), request);
    v1::FetchMessagesResponse response;
    int fd = -1;
    uint64_t messages = 0, bytes = 0;
    std::string failure;
    std::set<uint32_t> received;
    ProgressLine progress(ctx.err(), !s->quiet && StderrIsTerminal());
    while (failure.empty() && reader->Read(&response)) {
      for (const v1::FetchPiece& piece : response.pieces()) {
        if (piece.has_metadata()) {
          received.insert(piece.metadata().uid());
          if (fd >= 0) close(fd);
          const std::string path = absl::StrCat(s->output_dir, "/", piece.metadata().uid(), ".eml");
          fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
          if (fd < 0) {
            failure = absl::StrCat("cannot write ", path);
            break;
          }
          ++messages;
        }
        if (fd >= 0 && !WriteAll(fd, piece.data())) {
          failure = "writing a message failed";
          break;
        }
        bytes += piece.data().size();
      }
      progress.Update(bytes, 0, messages, uids.size());
    }
    progress.Clear();
    if (!failure.empty()) context->TryCancel();
    grpc::Status status = reader->Finish();
    if (fd >= 0) close(fd);
    if (!failure.empty()) return ctx.Fail(absl::InternalError(failure));
    if (!status.ok()) return ctx.Fail(FromGrpcStatus(status));
    std::set<uint32_t> asked(uids.begin(), uids.end());
    std::vector<uint32_t> missing;
    for (uint32_t uid : asked) {
      if (!received.count(uid)) missing.push_back(uid);
    }
    if (ctx.format() == OutputFormat::kJson) {
      ctx.out() << "{\"written\": " << messages << ", \"requested\": " << asked.size() << ", \"bytes\": " << bytes
                << ", \"output_dir\": " << JsonQuote(s->output_dir) << ", \"missing_uids\": ["
                << absl::StrJoin(missing, ", ") << "]}\n";
    }
    ctx.err() << messages << " of " << asked.size() << " messages (" << bytes << " bytes) written to " << s->output_dir
              << "\n";
    if (!missing.empty()) {
      ctx.err() << missing.size() << " not in the folder (no such UID): " << UidRanges(missing) << "\n";
    }
    return kExitOk;
  };
  return c;
}

// `mail watch`: one line per change to a folder until interrupted.
Command MailWatch() {
  struct State {
    std::string since_uid, uid_validity;
  };
  auto s = std::make_shared<State>();
  Command c;
  c.name = "watch";
  c.summary = "print changes to a folder as they happen (new mail, expunged, flags), until interrupted";
  c.description =
      "Watches FOLDER through the broker's IMAP IDLE and prints one line per change: new messages (UID, date,\n"
      "sender, subject), expunged UIDs, flag changes, and a resync when the folder's UIDVALIDITY changed.\n"
      "--since-uid N first prints the messages after UID N, so that a watch started again from the last\n"
      "UID printed misses nothing. --output json prints one JSON object per line.";
  c.usage = "GRANT FOLDER [--since-uid N] [--uid-validity N]";
  c.flags = [s](FlagSet& f) {
    f.String("since-uid", &s->since_uid, "N", "first the messages after this UID");
    f.String("uid-validity", &s->uid_validity, "N", "the folder's UIDVALIDITY N belongs to (a resync if stale)");
  };
  c.run = [s](Context& ctx, const std::vector<std::string>& args) {
    if (args.size() != 2) return WrongArgs(ctx, "mail watch", "expected GRANT and FOLDER");
    uint32_t since_uid = 0, uid_validity = 0;
    if (!s->since_uid.empty() && !absl::SimpleAtoi(s->since_uid, &since_uid)) {
      return WrongArgs(ctx, "mail watch", "--since-uid: expected a UID (0-4294967295)");
    }
    if (!s->uid_validity.empty() && !absl::SimpleAtoi(s->uid_validity, &uid_validity)) {
      return WrongArgs(ctx, "mail watch", "--uid-validity: expected a number (0-4294967295)");
    }
    v1::WatchMailboxRequest request;
    request.set_grant(args[0]);
    request.set_folder(args[1]);
    request.set_since_uid(since_uid);
    request.set_uid_validity(uid_validity);
    absl::StatusOr<BrokerClient*> client = ctx.Client();
    if (!client.ok()) return ctx.Fail(client.status());
    // MailService calls carry a deadline: a year stands for "until
    // interrupted".
    std::unique_ptr<grpc::ClientContext> context = (*client)->NewContext(absl::Hours(24 * 365));
    auto reader = (*client)->mail().WatchMailbox(context.get(), request);
    // The broker answers with its headers once the watch is live.
    reader->WaitForInitialMetadata();
    const auto& headers = context->GetServerInitialMetadata();
    auto validity = headers.find("uid-validity");
    if (validity != headers.end()) {
      ctx.err() << "watching " << args[1] << " of " << args[0] << " (UIDVALIDITY "
                << std::string(validity->second.data(), validity->second.size()) << "); Ctrl-C to stop" << std::endl;
    }
    google::protobuf::util::JsonPrintOptions json;
    json.preserve_proto_field_names = true;
    v1::MailboxEvent event;
    while (reader->Read(&event)) {
      std::ostream& out = ctx.out();
      if (ctx.format() == OutputFormat::kJson) {
        std::string line;
        (void)google::protobuf::util::MessageToJsonString(event, &line, json);
        out << line << "\n" << std::flush;
        continue;
      }
      switch (event.event_case()) {
        case v1::MailboxEvent::kNewMessage: {
          const v1::MessageSummary& m = event.new_message();
          out << absl::StrFormat("new       %8d  %s  %s  %s\n", m.uid(), When(m.internal_date()),
                                 FitColumn(Who(m.from()), 24), FitColumn(m.subject(), 200));
          break;
        }
        case v1::MailboxEvent::kExpungedUid:
          out << absl::StrFormat("expunged  %8d\n", event.expunged_uid());
          break;
        case v1::MailboxEvent::kFlagsChanged:
          out << absl::StrFormat("flags     %8d  %s\n", event.flags_changed().uid(),
                                 absl::StrJoin(event.flags_changed().flags(), " "));
          break;
        case v1::MailboxEvent::kResync:
          out << "resync    UIDVALIDITY " << event.uid_validity()
              << ": every UID held before names nothing now; search the folder again\n";
          break;
        default:
          break;
      }
      out << std::flush;
    }
    grpc::Status status = reader->Finish();
    return ctx.Fail(status.ok() ? absl::UnavailableError("the broker ended the watch; watch again")
                                : FromGrpcStatus(status));
  };
  return c;
}

}  // namespace

Command MailCommand() {
  Command c;
  c.name = "mail";
  c.summary = "read mail through the broker (the caller never sees a token)";
  c.children = {MailFolders(), MailStatus(), MailSearch(), MailFetch(), MailFetchMany(), MailWatch()};
  return c;
}

}  // namespace tokenbroker::ctl
