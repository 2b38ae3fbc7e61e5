#include "service/api/mail_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/api/convert.h"
#include "service/api/reactors.h"
#include "service/common/status_macros.h"
#include "service/imap/imap_text.h"

namespace tokenbroker {
namespace {

constexpr size_t kMaxFolderBytes = 1000;

absl::Status ValidateFolder(absl::string_view folder) {
  if (folder.empty()) return absl::InvalidArgumentError("folder: required");
  return ValidateImapString("folder", folder, kMaxFolderBytes);
}

std::optional<absl::Time> ParseInternalDate(absl::string_view s) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%d-%b-%Y %H:%M:%S %z", std::string(absl::StripLeadingAsciiWhitespace(s)), &t, &err)) return t;
  return std::nullopt;
}

std::optional<absl::Time> ParseHeaderDate(absl::string_view s) {
  std::string text(absl::StripAsciiWhitespace(s));
  if (const size_t comment = text.find(" ("); comment != std::string::npos) text.resize(comment);  // "(UTC)"
  absl::Time t;
  std::string err;
  for (const char* format : {"%a, %d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M:%S %z", "%a, %d %b %Y %H:%M %z"}) {
    if (absl::ParseTime(format, text, &t, &err)) return t;
  }
  return std::nullopt;
}

void AddAddresses(const std::vector<ImapAddress>& in, google::protobuf::RepeatedPtrField<v1::Address>* out) {
  for (const ImapAddress& a : in) {
    v1::Address* address = out->Add();
    address->set_name(a.name);
    address->set_email(a.address);
  }
}

void SummaryToProto(const ImapMessageSummary& m, v1::MessageSummary* out) {
  out->set_uid(m.uid);
  for (const std::string& f : m.flags) out->add_flags(f);
  out->set_size(m.size);
  if (auto t = ParseInternalDate(m.internal_date)) *out->mutable_internal_date() = ToTimestamp(*t);
  out->set_subject(m.envelope.subject);
  AddAddresses(m.envelope.from, out->mutable_from());
  AddAddresses(m.envelope.to, out->mutable_to());
  AddAddresses(m.envelope.cc, out->mutable_cc());
  if (auto t = ParseHeaderDate(m.envelope.date)) *out->mutable_date() = ToTimestamp(*t);
  out->set_message_id(m.envelope.message_id);
  out->set_in_reply_to(m.envelope.in_reply_to);
}

std::string SpecialUse(const std::vector<std::string>& attributes) {
  for (const std::string& a : attributes) {
    const std::string lower = absl::AsciiStrToLower(a);
    for (const char* use : {"\\sent", "\\trash", "\\drafts", "\\junk", "\\archive", "\\all", "\\flagged"}) {
      if (lower == use) return a;
    }
  }
  return "";
}

absl::StatusOr<ImapSearchBuilder> BuildCriteria(const v1::SearchCriteria& c) {
  ImapSearchBuilder b;
  if (c.has_since()) b.Since(absl::FromUnixSeconds(c.since().seconds()));
  if (c.has_before()) b.Before(absl::FromUnixSeconds(c.before().seconds()));
  if (!c.from().empty()) RETURN_IF_ERROR(b.From(c.from()));
  if (!c.to().empty()) RETURN_IF_ERROR(b.To(c.to()));
  if (!c.subject().empty()) RETURN_IF_ERROR(b.Subject(c.subject()));
  if (c.unseen_only()) b.Unseen();
  if (c.uid_min() > 0 || c.uid_max() > 0) {
    if (c.uid_max() > 0 && c.uid_max() < c.uid_min()) {
      return absl::InvalidArgumentError("criteria.uid_max: smaller than uid_min");
    }
    b.UidRange(std::max<uint32_t>(1, c.uid_min()), c.uid_max());
  }
  if (c.has_header()) RETURN_IF_ERROR(b.Header(c.header().name(), c.header().value()));
  return b;
}

}  // namespace

absl::StatusOr<CallContext> MailServiceImpl::Admit(grpc::CallbackServerContext* context, absl::string_view method,
                                                   absl::string_view grant) {
  ASSIGN_OR_RETURN(CallContext call, guard_->Admit(context, method, Action::kMailRead, grant));
  if (context->deadline() == std::chrono::system_clock::time_point::max()) {
    absl::Status missing = absl::InvalidArgumentError(
        "deadline: MailService calls must carry a deadline (a gRPC timeout), for example 30s, or 1h for a large "
        "fetch");
    guard_->Audit(call, method, Action::kMailRead, grant, missing);
    return missing;
  }
  return call;
}

grpc::ServerUnaryReactor* MailServiceImpl::Later(grpc::CallbackServerContext* context, const CallContext& call,
                                                 absl::string_view method, const std::string& grant,
                                                 const absl::Status& invalid, std::function<absl::Status()> work) {
  if (!invalid.ok()) {
    guard_->Audit(call, method, Action::kMailRead, grant, invalid);
    return FinishUnary(context, ToGrpcStatus(invalid));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued = workers_.Submit([this, reactor, call, method, grant, work = std::move(work)] {
    absl::Status status = work();
    guard_->Audit(call, method, Action::kMailRead, grant, status);
    reactor->Finish(ToGrpcStatus(status));
  });
  if (!queued) {
    const absl::Status busy = absl::ResourceExhaustedError("too many mail calls are waiting; retry with backoff");
    guard_->Audit(call, method, Action::kMailRead, grant, busy);
    reactor->Finish(ToGrpcStatus(busy));
  }
  return reactor;
}

grpc::ServerUnaryReactor* MailServiceImpl::ListFolders(grpc::CallbackServerContext* context,
                                                       const v1::ListFoldersRequest* request,
                                                       v1::ListFoldersResponse* response) {
  static constexpr absl::string_view kMethod = "MailService/ListFolders";
  absl::StatusOr<CallContext> call = Admit(context, kMethod, request->grant());
  if (!call.ok()) return FinishUnary(context, ToGrpcStatus(call.status()));
  return Later(context, *call, kMethod, request->grant(), ValidateId("grant", request->grant()),
               [this, request, response]() -> absl::Status {
                 return pool_->Run(request->grant(), "list", [&](ImapSession& session) -> absl::Status {
                   ASSIGN_OR_RETURN(std::vector<ImapFolder> folders, session.ListFolders());
                   for (const ImapFolder& f : folders) {
                     v1::Folder* out = response->add_folders();
                     out->set_name(f.name);
                     out->set_delimiter(f.delimiter);
                     for (const std::string& a : f.attributes) out->add_attributes(a);
                     out->set_special_use(SpecialUse(f.attributes));
                   }
                   return absl::OkStatus();
                 });
               });
}

grpc::ServerUnaryReactor* MailServiceImpl::GetFolderStatus(grpc::CallbackServerContext* context,
                                                           const v1::GetFolderStatusRequest* request,
                                                           v1::FolderStatus* response) {
  static constexpr absl::string_view kMethod = "MailService/GetFolderStatus";
  absl::StatusOr<CallContext> call = Admit(context, kMethod, request->grant());
  if (!call.ok()) return FinishUnary(context, ToGrpcStatus(call.status()));
  absl::Status invalid = ValidateId("grant", request->grant());
  if (invalid.ok()) invalid = ValidateFolder(request->folder());
  return Later(context, *call, kMethod, request->grant(), invalid, [this, request, response]() -> absl::Status {
    return pool_->Run(request->grant(), "status", [&](ImapSession& session) -> absl::Status {
      absl::StatusOr<ImapFolderStatus> status = session.Status(request->folder());
      if (absl::IsFailedPrecondition(status.status()) || absl::IsNotFound(status.status())) {
        return absl::NotFoundError(absl::StrCat("folder \"", request->folder(), "\": ", status.status().message()));
      }
      if (!status.ok()) return status.status();
      response->set_folder(request->folder());
      response->set_messages(static_cast<uint32_t>(status->messages));
      response->set_unseen(static_cast<uint32_t>(status->unseen));
      response->set_uid_next(static_cast<uint32_t>(status->uid_next));
      response->set_uid_validity(static_cast<uint32_t>(status->uid_validity));
      return absl::OkStatus();
    });
  });
}

grpc::ServerUnaryReactor* MailServiceImpl::SearchMessages(grpc::CallbackServerContext* context,
                                                          const v1::SearchMessagesRequest* request,
                                                          v1::SearchMessagesResponse* response) {
  static constexpr absl::string_view kMethod = "MailService/SearchMessages";
  absl::StatusOr<CallContext> call = Admit(context, kMethod, request->grant());
  if (!call.ok()) return FinishUnary(context, ToGrpcStatus(call.status()));
  absl::Status invalid = ValidateId("grant", request->grant());
  if (invalid.ok()) invalid = ValidateFolder(request->folder());
  if (invalid.ok() && request->limit() > 1000) invalid = absl::InvalidArgumentError("limit: at most 1000");
  absl::StatusOr<ImapSearchBuilder> criteria = BuildCriteria(request->criteria());
  if (invalid.ok()) invalid = criteria.status();
  if (!invalid.ok()) return Later(context, *call, kMethod, request->grant(), invalid, nullptr);
  return Later(context, *call, kMethod, request->grant(), invalid,
               [this, request, response, criteria = *std::move(criteria)]() -> absl::Status {
                 return pool_->Run(request->grant(), "search", [&](ImapSession& session) -> absl::Status {
                   ASSIGN_OR_RETURN(ImapSelected selected, session.Select(request->folder()));
                   ASSIGN_OR_RETURN(std::vector<uint32_t> uids, session.UidSearch(criteria));
                   response->set_total_matches(static_cast<uint32_t>(uids.size()));
                   response->set_uid_validity(static_cast<uint32_t>(selected.uid_validity));
                   const size_t limit = request->limit() == 0 ? 100 : request->limit();
                   const bool oldest_first = request->order() == v1::SearchMessagesRequest::ORDER_OLDEST_FIRST;
                   if (!oldest_first) std::reverse(uids.begin(), uids.end());
                   if (uids.size() > limit) uids.resize(limit);
                   ASSIGN_OR_RETURN(std::vector<ImapMessageSummary> summaries, session.FetchSummaries(uids));
                   if (!oldest_first) std::reverse(summaries.begin(), summaries.end());
                   for (const ImapMessageSummary& m : summaries) SummaryToProto(m, response->add_messages());
                   return absl::OkStatus();
                 });
               });
}

// Streams one fetch. The worker thread writes each chunk and waits until gRPC
// has taken it (OnWriteDone) before reading the next from the mail server.
class MailServiceImpl::FetchReactor final : public grpc::ServerWriteReactor<v1::FetchMessageResponse> {
 public:
  static constexpr absl::string_view kMethod = "MailService/FetchMessage";

  FetchReactor(MailServiceImpl* service, grpc::CallbackServerContext* context, const v1::FetchMessageRequest* request)
      : request_(request) {
    absl::StatusOr<CallContext> call = service->Admit(context, kMethod, request->grant());
    if (!call.ok()) {
      Finish(ToGrpcStatus(call.status()));
      return;
    }
    absl::Status invalid = Validate();
    if (!invalid.ok()) {
      service->guard_->Audit(*call, kMethod, Action::kMailRead, request->grant(), invalid);
      Finish(ToGrpcStatus(invalid));
      return;
    }
    const bool queued = service->workers_.Submit([this, service, call = *call] {
      absl::Status status = service->pool_->Run(
          request_->grant(), "fetch", [&](ImapSession& session) { return Stream(session, service->on_fetched_bytes_); },
          [this] { return !sent_any_; });
      service->guard_->Audit(call, kMethod, Action::kMailRead, request_->grant(), status, "",
                             status.ok() ? absl::StrCat("uid ", request_->uid()) : std::string(status.message()));
      if (status.ok() && last_ >= 0) {
        // The last chunk goes out with the status: one step less per call.
        StartWriteAndFinish(&out_[last_], grpc::WriteOptions(), grpc::Status::OK);
      } else {
        Finish(ToGrpcStatus(status));
      }
    });
    if (!queued) {
      const absl::Status busy = absl::ResourceExhaustedError("too many mail calls are waiting; retry with backoff");
      service->guard_->Audit(*call, kMethod, Action::kMailRead, request->grant(), busy);
      Finish(ToGrpcStatus(busy));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) cancelled_ = true;
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Validate() {
    RETURN_IF_ERROR(ValidateId("grant", request_->grant()));
    RETURN_IF_ERROR(ValidateFolder(request_->folder()));
    if (request_->uid() == 0) return absl::InvalidArgumentError("uid: required");
    switch (request_->part()) {
      case v1::FetchMessageRequest::PART_HEADERS:
        section_ = "HEADER";
        break;
      case v1::FetchMessageRequest::PART_SECTION:
        if (request_->section().empty()) return absl::InvalidArgumentError("section: required with PART_SECTION");
        RETURN_IF_ERROR(ValidateImapSection(request_->section()));
        section_ = request_->section();
        break;
      default:
        break;
    }
    chunk_size_ = request_->chunk_size() == 0 ? 256 * 1024 : request_->chunk_size();
    if (chunk_size_ < 4096 || chunk_size_ > 4 * 1024 * 1024) {
      return absl::InvalidArgumentError("chunk_size: between 4096 and 4194304 bytes");
    }
    return absl::OkStatus();
  }

  // Starts writing `out_[next_]` once the previous write is done, and
  // returns without waiting for this one: reading the next chunk from the
  // mail server overlaps with sending this one. Two buffers, so memory stays
  // at two chunks. CANCELLED if the client went away.
  absl::Status Send() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* w) { return !*w; }, &writing_));
    if (cancelled_) return absl::CancelledError("the caller cancelled the fetch");
    writing_ = true;
    sent_any_ = true;
    StartWrite(&out_[next_]);
    next_ ^= 1;
    return absl::OkStatus();
  }
  // Waits for the last write (before Finish).
  void Drain() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* w) { return !*w; }, &writing_));
  }

  absl::Status Stream(ImapSession& session, const std::function<void(uint64_t)>& on_bytes) {
    ASSIGN_OR_RETURN(ImapSelected selected, session.Select(request_->folder()));
    if (request_->uid_validity() != 0 && request_->uid_validity() != selected.uid_validity) {
      return absl::FailedPreconditionError(absl::StrCat("folder \"", request_->folder(), "\" has UIDVALIDITY ",
                                                        selected.uid_validity, ", not ", request_->uid_validity(),
                                                        ": the UIDs you hold name other messages now; search again"));
    }
    auto start = [&](const ImapMessageSummary& message, uint64_t size) -> absl::Status {
      v1::FetchMessageResponse& out = out_[next_];
      out.Clear();
      v1::FetchMetadata* m = out.mutable_metadata();
      m->set_uid(message.uid);
      m->set_uid_validity(static_cast<uint32_t>(selected.uid_validity));
      m->set_size(size);
      for (const std::string& f : message.flags) m->add_flags(f);
      if (auto t = ParseInternalDate(message.internal_date)) *m->mutable_internal_date() = ToTimestamp(*t);
      remaining_ = size;
      return Send();
    };
    auto sink = [&](absl::string_view chunk) -> absl::Status {
      // out_[next_] is free: the write in flight, if any, uses the other one.
      v1::FetchMessageResponse& out = out_[next_];
      out.Clear();
      out.set_data(chunk.data(), chunk.size());
      if (on_bytes) on_bytes(chunk.size());
      remaining_ -= std::min<uint64_t>(remaining_, chunk.size());
      if (remaining_ == 0) {
        // Kept for StartWriteAndFinish; wait until the buffer is not written.
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](bool* w) { return !*w; }, &writing_));
        if (cancelled_) return absl::CancelledError("the caller cancelled the fetch");
        sent_any_ = true;
        last_ = next_;
        return absl::OkStatus();
      }
      return Send();
    };
    absl::Status status = session.FetchSection(request_->uid(), section_, chunk_size_, sink, start).status();
    Drain();
    return status;
  }

  const v1::FetchMessageRequest* request_;
  std::string section_;
  size_t chunk_size_ = 0;
  // Two buffers: one being written, one being filled.
  v1::FetchMessageResponse out_[2];
  int next_ = 0;
  // The buffer holding the last chunk, sent with the status; -1 when none.
  int last_ = -1;
  uint64_t remaining_ = 0;
  // Only the worker thread touches it.
  bool sent_any_ = false;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerWriteReactor<v1::FetchMessageResponse>* MailServiceImpl::FetchMessage(
    grpc::CallbackServerContext* context, const v1::FetchMessageRequest* request) {
  return new FetchReactor(this, context, request);
}

}  // namespace tokenbroker
