#include "service/api/mail_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/api/convert.h"
#include "service/api/queued_writer.h"
#include "service/api/reactors.h"
#include "service/common/status_macros.h"
#include "service/imap/imap_text.h"
#include "service/mail/mailbox.h"

namespace tokenbroker {
namespace {

constexpr size_t kMaxFolderBytes = 1000;
// The most message bytes in one response: with the response's own fields it
// stays under gRPC's default 4 MiB limit on a received message, so that
// callers need not raise theirs.
constexpr uint64_t kMaxDataPerResponse = 4000000;
// GetMessage: the largest message it returns by default and at most, and the
// chunks it reads the message in.
constexpr uint64_t kDefaultMaxMessageSize = 1 << 20;
constexpr uint64_t kMaxMessageSize = kMaxDataPerResponse;
constexpr size_t kWholeChunk = 256 * 1024;

absl::Status ValidateFolder(absl::string_view folder) {
  if (folder.empty()) return absl::InvalidArgumentError("folder: required");
  return ValidateImapString("folder", folder, kMaxFolderBytes);
}

void AddAddresses(const std::vector<MailAddress>& in, google::protobuf::RepeatedPtrField<v1::Address>* out) {
  for (const MailAddress& a : in) {
    v1::Address* address = out->Add();
    address->set_name(a.name);
    address->set_email(a.email);
  }
}

void SummaryToProto(const MailSummary& m, v1::MessageSummary* out) {
  out->set_uid(m.uid);
  for (const std::string& f : m.flags) out->add_flags(f);
  out->set_size(m.size);
  if (m.internal_date) *out->mutable_internal_date() = ToTimestamp(*m.internal_date);
  out->set_subject(m.subject);
  AddAddresses(m.from, out->mutable_from());
  AddAddresses(m.to, out->mutable_to());
  AddAddresses(m.cc, out->mutable_cc());
  if (m.date) *out->mutable_date() = ToTimestamp(*m.date);
  out->set_message_id(m.message_id);
  out->set_in_reply_to(m.in_reply_to);
}

MailQuery QueryFromProto(const v1::SearchMessagesRequest& request) {
  const v1::SearchCriteria& c = request.criteria();
  MailQuery q;
  if (c.has_since()) q.since = absl::FromUnixSeconds(c.since().seconds());
  if (c.has_before()) q.before = absl::FromUnixSeconds(c.before().seconds());
  q.from = c.from();
  q.to = c.to();
  q.subject = c.subject();
  q.unseen_only = c.unseen_only();
  q.uid_min = c.uid_min();
  q.uid_max = c.uid_max();
  if (c.has_header()) {
    q.header_name = c.header().name();
    q.header_value = c.header().value();
  }
  q.limit = request.limit();
  q.oldest_first = request.order() == v1::SearchMessagesRequest::ORDER_OLDEST_FIRST;
  return q;
}

// A method's place among MailService's methods, as the generated classes
// number them (the proto's order).
int MailMethodIndex(const char* method) {
  return v1::GetMessageRequest::descriptor()
      ->file()
      ->FindServiceByName("MailService")
      ->FindMethodByName(method)
      ->index();
}

}  // namespace

MailServiceImpl::MailServiceImpl(MailPool* pool, CallGuard* guard, MailServiceOptions options,
                                 std::function<void(uint64_t)> on_fetched_bytes, MailboxWatches* watches)
    : pool_(pool),
      guard_(guard),
      watches_(watches),
      watch_queue_(std::max<size_t>(2, options.watch_queue)),
      on_fetched_bytes_(std::move(on_fetched_bytes)),
      workers_(options.workers, options.max_pending),
      stream_workers_(options.stream_workers, options.max_pending) {
  const int fetch = MailMethodIndex("FetchMessage");
  if (options.fetch_message_threads <= 0) {
    MarkMethodCallback(
        fetch, new grpc::internal::CallbackServerStreamingHandler<v1::FetchMessageRequest, v1::FetchMessageResponse>(
                   [this](grpc::CallbackServerContext* context, const v1::FetchMessageRequest* request) {
                     return FetchMessageLater(context, request);
                   }));
  } else {
    MarkMethodAsync(fetch);
    fetch_message_threads_ = std::make_unique<FetchMessageThreads>(
        options.fetch_message_threads,
        options.get_message_threads_poll ? FetchMessageThreads::Queues::kPolling
                                         : FetchMessageThreads::Queues::kNonPolling,
        "fetch-message",
        [this, fetch](grpc::ServerContext* context, v1::FetchMessageRequest* request,
                      grpc::ServerAsyncWriter<v1::FetchMessageResponse>* stream, grpc::ServerCompletionQueue* queue,
                      void* tag) { RequestAsyncServerStreaming(fetch, context, request, stream, queue, queue, tag); },
        [this](grpc::ServerContext* context, const v1::FetchMessageRequest& request,
               FetchMessageThreads::Writer& writer) { return FetchMessageHere(context, request, writer); });
  }
  const int index = MailMethodIndex("GetMessage");
  if (options.get_message_threads <= 0) {
    MarkMethodCallback(
        index, new grpc::internal::CallbackUnaryHandler<v1::GetMessageRequest, v1::GetMessageResponse>(
                   [this](grpc::CallbackServerContext* context, const v1::GetMessageRequest* request,
                          v1::GetMessageResponse* response) { return GetMessageLater(context, request, response); }));
    return;
  }
  MarkMethodAsync(index);
  get_message_threads_ = std::make_unique<GetMessageThreads>(
      options.get_message_threads,
      options.get_message_threads_poll ? GetMessageThreads::Queues::kPolling : GetMessageThreads::Queues::kNonPolling,
      "get-message",
      [this, index](grpc::ServerContext* context, v1::GetMessageRequest* request,
                    grpc::ServerAsyncResponseWriter<v1::GetMessageResponse>* writer, grpc::ServerCompletionQueue* queue,
                    void* tag) { RequestAsyncUnary(index, context, request, writer, queue, queue, tag); },
      [this](grpc::ServerContext* context, const v1::GetMessageRequest& request, v1::GetMessageResponse* response) {
        return GetMessageHere(context, request, response);
      });
}

void MailServiceImpl::AddCompletionQueues(grpc::ServerBuilder& builder) {
  if (get_message_threads_ != nullptr) get_message_threads_->AddQueues(builder);
  if (fetch_message_threads_ != nullptr) fetch_message_threads_->AddQueues(builder);
}

void MailServiceImpl::StartThreads() {
  if (get_message_threads_ != nullptr) get_message_threads_->Start();
  if (fetch_message_threads_ != nullptr) fetch_message_threads_->Start();
}

void MailServiceImpl::StopThreads() {
  if (get_message_threads_ != nullptr) get_message_threads_->Stop();
  if (fetch_message_threads_ != nullptr) fetch_message_threads_->Stop();
}

absl::StatusOr<CallContext> MailServiceImpl::Admit(grpc::ServerContextBase* context, absl::string_view method,
                                                   absl::string_view grant) {
  ASSIGN_OR_RETURN(CallContext call, guard_->Admit(context, method, Action::kMailRead, grant));
  RETURN_IF_ERROR(guard_->RequireDeadline(context, call, method, Action::kMailRead, grant,
                                          "it holds an IMAP connection (for example 30s, or 1h for a large fetch)"));
  return call;
}

grpc::ServerUnaryReactor* MailServiceImpl::Later(grpc::CallbackServerContext* context, const CallContext& call,
                                                 absl::string_view method, const std::string& grant,
                                                 const absl::Status& invalid, std::function<absl::Status()> work) {
  return LaterOn(workers_, context, call, method, grant, invalid, std::move(work));
}

grpc::ServerUnaryReactor* MailServiceImpl::LaterOn(Executor& executor, grpc::CallbackServerContext* context,
                                                   const CallContext& call, absl::string_view method,
                                                   const std::string& grant, const absl::Status& invalid,
                                                   std::function<absl::Status()> work, std::string detail) {
  if (!invalid.ok()) {
    guard_->Audit(call, method, Action::kMailRead, grant, invalid);
    return FinishUnary(context, ToGrpcStatus(invalid));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued = executor.Submit([this, reactor, call, method, grant, work = std::move(work),
                                       detail = std::move(detail)] {
    absl::Status status = work();
    guard_->Audit(call, method, Action::kMailRead, grant, status, "", status.ok() ? detail : "");
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
                   ASSIGN_OR_RETURN(std::vector<MailFolder> folders, Mailbox(session).Folders());
                   for (const MailFolder& f : folders) {
                     v1::Folder* out = response->add_folders();
                     out->set_name(f.name);
                     out->set_delimiter(f.delimiter);
                     for (const std::string& a : f.attributes) out->add_attributes(a);
                     out->set_special_use(f.special_use);
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
      ASSIGN_OR_RETURN(MailFolderStatus status, Mailbox(session).Status(request->folder()));
      response->set_folder(status.folder);
      response->set_messages(status.messages);
      response->set_unseen(status.unseen);
      response->set_uid_next(status.uid_next);
      response->set_uid_validity(status.uid_validity);
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
  MailQuery query = QueryFromProto(*request);
  absl::Status invalid = ValidateId("grant", request->grant());
  if (invalid.ok()) invalid = ValidateFolder(request->folder());
  if (invalid.ok()) invalid = ValidateQuery(query);
  return Later(context, *call, kMethod, request->grant(), invalid,
               [this, request, response, query = std::move(query)]() -> absl::Status {
                 return pool_->Run(request->grant(), "search", [&](ImapSession& session) -> absl::Status {
                   ASSIGN_OR_RETURN(MailSearchResult result, Mailbox(session).Search(request->folder(), query));
                   response->set_total_matches(result.total_matches);
                   response->set_uid_validity(result.uid_validity);
                   for (const MailSummary& m : result.messages) SummaryToProto(m, response->add_messages());
                   return absl::OkStatus();
                 });
               });
}

// A server-streaming reactor whose responses are filled on a worker thread:
// Send() starts writing the buffer just filled and returns without waiting,
// so reading the next bytes from the mail server overlaps with sending these.
// Two buffers, so memory stays at two responses.
template <typename Response>
class PipelinedWriteReactor : public grpc::ServerWriteReactor<Response> {
 public:
  void OnWriteDone(bool ok) override {
    Response* last = nullptr;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
      last = std::exchange(final_write_, nullptr);
    }
    // SendTwoAndFinish's second write goes from here, not from the worker.
    if (last != nullptr) {
      if (ok) {
        this->StartWriteAndFinish(last, grpc::WriteOptions(), grpc::Status::OK);
      } else {
        this->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the caller went away"));
      }
    }
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  void OnDone() override { delete this; }

  // The buffer being filled.
  Response& Current() { return out_[next_]; }
  // The other buffer: free only while no write is in flight.
  Response& Other() { return out_[next_ ^ 1]; }
  // Waits for the write in flight, then writes Current() and switches to the
  // other buffer (cleared). CANCELLED if the client went away.
  absl::Status Send() {
    RETURN_IF_ERROR(AwaitIdle());
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
    }
    sent_any_ = true;
    this->StartWrite(&out_[next_]);
    next_ ^= 1;
    out_[next_].Clear();
    return absl::OkStatus();
  }
  // Waits until no write is in flight.
  absl::Status AwaitIdle() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* w) { return !*w; }, &writing_));
    if (cancelled_) return absl::CancelledError("the caller cancelled the fetch");
    return absl::OkStatus();
  }

 protected:
  // Writes `first`, then `last` with an OK status, and so ends the call,
  // without the worker waiting between them: the second write starts when
  // gRPC says the first is done. Nothing may be in flight.
  void SendTwoAndFinish(Response* first, Response* last) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
      final_write_ = last;
    }
    sent_any_ = true;
    this->StartWrite(first);
  }

  Response out_[2];
  int next_ = 0;
  // Whether any byte went out (then a failure cannot be retried unseen).
  // Only the worker thread touches it.
  bool sent_any_ = false;

 private:
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // SendTwoAndFinish's second response, until the first is written.
  Response* final_write_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// The data bytes per response: chunk_size, of which at most
// kMaxDataPerResponse (4 MiB is accepted, as it always was, and sent as
// 4,000,000 so that the response fits a caller's default limit).
absl::StatusOr<size_t> ValidateChunkSize(uint32_t requested) {
  const size_t chunk_size = requested == 0 ? 256 * 1024 : requested;
  if (chunk_size < 4096 || chunk_size > 4 * 1024 * 1024) {
    return absl::InvalidArgumentError("chunk_size: between 4096 and 4194304 bytes");
  }
  return std::min<size_t>(chunk_size, kMaxDataPerResponse);
}

// Checks what names one message (FetchMessage, GetMessage) and returns the
// IMAP section to fetch: "" (the whole message), "HEADER" or a body part.
template <typename Request>
absl::StatusOr<std::string> ValidateOneMessage(const Request& request) {
  RETURN_IF_ERROR(ValidateId("grant", request.grant()));
  RETURN_IF_ERROR(ValidateFolder(request.folder()));
  if (request.uid() == 0) return absl::InvalidArgumentError("uid: required");
  switch (request.part()) {
    case v1::FetchMessageRequest::PART_HEADERS:
      return std::string("HEADER");
    case v1::FetchMessageRequest::PART_SECTION:
      if (request.section().empty()) return absl::InvalidArgumentError("section: required with PART_SECTION");
      RETURN_IF_ERROR(ValidateImapSection(request.section()));
      return request.section();
    default:
      return std::string();
  }
}

void SetMetadata(const MailFetchStart& message, v1::FetchMetadata* m) {
  m->set_uid(message.uid);
  m->set_uid_validity(message.uid_validity);
  m->set_size(message.size);
  for (const std::string& f : message.flags) m->add_flags(f);
  if (message.internal_date) *m->mutable_internal_date() = ToTimestamp(*message.internal_date);
}

absl::StatusOr<uint64_t> ValidateMaxSize(uint32_t requested) {
  if (requested == 0) return kDefaultMaxMessageSize;
  if (requested > kMaxMessageSize) {
    return absl::InvalidArgumentError(absl::StrCat("max_size: at most ", kMaxMessageSize, " bytes"));
  }
  return requested;
}

// GetMessage's work: the message whole into `response`, or
// FAILED_PRECONDITION before its first byte when it is larger than
// `max_size` (the session, with the rest of it unread, is then dropped).
absl::Status FetchWhole(ImapSession& session, const v1::GetMessageRequest& request, absl::string_view section,
                        uint64_t max_size, v1::GetMessageResponse* response) {
  response->Clear();  // a retry on a fresh connection starts over
  auto start = [&](const MailFetchStart& message) -> absl::Status {
    if (message.size > max_size) {
      return absl::FailedPreconditionError(absl::StrCat("uid ", message.uid, " is ", message.size,
                                                        " bytes, more than max_size (", max_size,
                                                        "): raise max_size (at most ", kMaxMessageSize,
                                                        ") or read it with FetchMessage"));
    }
    SetMetadata(message, response->mutable_metadata());
    response->mutable_data()->reserve(message.size);
    return absl::OkStatus();
  };
  auto sink = [&](absl::string_view chunk) -> absl::Status {
    response->mutable_data()->append(chunk.data(), chunk.size());
    return absl::OkStatus();
  };
  return Mailbox(session).Fetch(request.folder(), request.uid_validity(), request.uid(), section, kWholeChunk, start,
                                sink);
}

// What both fetch reactors do around their own streaming: admit the call,
// check the request, run the stream on a worker over a pooled session, audit
// it, and finish (with the last filled response, when `final_pending`).
template <typename Response>
class MailServiceImpl::StreamingFetch : public PipelinedWriteReactor<Response> {
 protected:
  struct Steps {
    std::function<absl::Status()> validate;
    std::function<absl::Status(ImapSession&)> stream;
    std::function<std::string()> detail;  // for the audit event of a success
    std::function<bool()> final_pending;
    // After a success: ends the call itself when it returns true (a whole
    // small message went out in one go); otherwise the last filled response
    // goes with the status (final_pending) or the status alone.
    std::function<bool()> finish_ok = [] { return false; };
  };

  void Begin(MailServiceImpl* service, grpc::CallbackServerContext* context, absl::string_view method,
             const std::string& grant, Steps steps) {
    absl::StatusOr<CallContext> call = service->Admit(context, method, grant);
    if (!call.ok()) {
      this->Finish(ToGrpcStatus(call.status()));
      return;
    }
    absl::Status invalid = steps.validate();
    if (!invalid.ok()) {
      service->guard_->Audit(*call, method, Action::kMailRead, grant, invalid);
      this->Finish(ToGrpcStatus(invalid));
      return;
    }
    const bool queued =
        service->stream_workers_.Submit([this, service, method, &grant, call = *call, steps = std::move(steps)] {
          absl::Status status = service->pool_->Run(grant, "fetch", steps.stream, [this] { return !this->sent_any_; });
          service->guard_->Audit(call, method, Action::kMailRead, grant, status, "",
                                 status.ok() ? steps.detail() : std::string(status.message()));
          if (status.ok() && steps.finish_ok()) {
            // Ended by the reactor's own writes.
          } else if (status.ok() && steps.final_pending()) {
            // The last response goes out with the status: one step less.
            this->StartWriteAndFinish(&this->Current(), grpc::WriteOptions(), grpc::Status::OK);
          } else {
            this->Finish(ToGrpcStatus(status));
          }
        });
    if (!queued) {
      const absl::Status busy = absl::ResourceExhaustedError("too many mail calls are waiting; retry with backoff");
      service->guard_->Audit(*call, method, Action::kMailRead, grant, busy);
      this->Finish(ToGrpcStatus(busy));
    }
  }
};

// FetchMessage's stream of one message through `writer` (a
// PipelinedWriteReactor, or an OwnThreadStream's Writer). A message that fits
// one response (most mail) is held whole (whole()): its metadata in
// Current() and its data in Other(), for the caller to send both at the end,
// back to back; then a failure before the end can still be retried on a fresh
// connection, and nothing waits between the two writes. A larger one goes
// out as its metadata, then its data in responses of at most `chunk_size`
// bytes, the last of which stays in writer.Current() to go with the status
// (last()).
template <typename Writer>
class OneMessageStream {
 public:
  explicit OneMessageStream(Writer& writer) : writer_(writer) {}

  absl::Status Run(ImapSession& session, const v1::FetchMessageRequest& request, const std::string& section,
                   size_t chunk_size, const std::function<void(uint64_t)>& on_bytes) {
    auto start = [&](const MailFetchStart& message) -> absl::Status {
      writer_.Current().Clear();
      SetMetadata(message, writer_.Current().mutable_metadata());
      remaining_ = message.size;
      whole_ = message.size > 0 && message.size <= chunk_size;
      if (whole_) {
        writer_.Other().Clear();  // its data goes here; nothing is in flight
        return absl::OkStatus();
      }
      return writer_.Send();
    };
    auto sink = [&](absl::string_view chunk) -> absl::Status {
      if (on_bytes) on_bytes(chunk.size());
      remaining_ -= std::min<uint64_t>(remaining_, chunk.size());
      if (whole_) {
        writer_.Other().mutable_data()->append(chunk.data(), chunk.size());
        return absl::OkStatus();
      }
      // Current() is free: the write in flight, if any, uses the other one.
      writer_.Current().set_data(chunk.data(), chunk.size());
      if (remaining_ == 0) {
        // Kept for the status, once the write in flight is done.
        RETURN_IF_ERROR(writer_.AwaitIdle());
        last_ = true;
        return absl::OkStatus();
      }
      return writer_.Send();
    };
    absl::Status status = Mailbox(session).Fetch(request.folder(), request.uid_validity(), request.uid(), section,
                                                 chunk_size, start, sink);
    absl::Status idle = writer_.AwaitIdle();
    return status.ok() ? idle : status;
  }

  // Current() holds the last chunk, to send with the status.
  bool last() const { return last_; }
  // The whole message is held: metadata in Current(), data in Other().
  bool whole() const { return whole_ && remaining_ == 0; }

 private:
  Writer& writer_;
  uint64_t remaining_ = 0;
  bool last_ = false;
  bool whole_ = false;
};

// What a FetchMessage request asks for, checked (both paths).
struct FetchRequest {
  std::string section;
  size_t chunk_size = 0;
};

absl::StatusOr<FetchRequest> CheckFetchMessage(const v1::FetchMessageRequest& request) {
  FetchRequest fetch;
  ASSIGN_OR_RETURN(fetch.section, ValidateOneMessage(request));
  ASSIGN_OR_RETURN(fetch.chunk_size, ValidateChunkSize(request.chunk_size()));
  return fetch;
}

// FetchMessage on the callback API: streamed from a stream worker, which
// fills a response while gRPC sends the previous one.
class MailServiceImpl::FetchReactor final : public StreamingFetch<v1::FetchMessageResponse> {
 public:
  FetchReactor(MailServiceImpl* service, grpc::CallbackServerContext* context, const v1::FetchMessageRequest* request)
      : request_(request), stream_(*this) {
    Begin(service, context, "MailService/FetchMessage", request->grant(),
          {[this] { return Validate(); },
           [this, service](ImapSession& session) {
             return stream_.Run(session, *request_, fetch_.section, fetch_.chunk_size, service->on_fetched_bytes_);
           },
           [this] { return absl::StrCat("uid ", request_->uid()); }, [this] { return stream_.last(); },
           [this] { return FinishWhole(); }});
  }

 private:
  absl::Status Validate() {
    ASSIGN_OR_RETURN(fetch_, CheckFetchMessage(*request_));
    return absl::OkStatus();
  }

  // A message that fits in one response (most mail) is read whole, then
  // sent as its metadata and its data back to back, ending the call: the
  // worker hands both to gRPC and is done, instead of waiting for the first
  // write before starting the second.
  bool FinishWhole() {
    if (!stream_.whole()) return false;
    SendTwoAndFinish(&Current(), &Other());
    return true;
  }

  const v1::FetchMessageRequest* request_;
  FetchRequest fetch_;
  OneMessageStream<FetchReactor> stream_;
};

// Streams many messages: small ones packed into one response up to the
// chunk size, large ones spread over several.
class MailServiceImpl::FetchManyReactor final : public StreamingFetch<v1::FetchMessagesResponse> {
 public:
  FetchManyReactor(MailServiceImpl* service, grpc::CallbackServerContext* context,
                   const v1::FetchMessagesRequest* request)
      : request_(request) {
    Begin(service, context, "MailService/FetchMessages", request->grant(),
          {[this] { return Validate(); },
           [this, service](ImapSession& session) { return Stream(session, service->on_fetched_bytes_, &messages_); },
           [this] { return absl::StrCat(messages_, " of ", request_->uids_size(), " messages"); },
           [this] { return Current().pieces_size() > 0; }});
  }

 private:
  absl::Status Validate() {
    RETURN_IF_ERROR(ValidateId("grant", request_->grant()));
    RETURN_IF_ERROR(ValidateFolder(request_->folder()));
    if (request_->uids().empty() || static_cast<size_t>(request_->uids_size()) > Mailbox::kMaxUidsPerFetch) {
      return absl::InvalidArgumentError(absl::StrCat("uids: between 1 and ", Mailbox::kMaxUidsPerFetch));
    }
    for (uint32_t uid : request_->uids()) {
      if (uid == 0) return absl::InvalidArgumentError("uids: 0 is not a UID");
    }
    switch (request_->part()) {
      case v1::FetchMessageRequest::PART_HEADERS:
        section_ = "HEADER";
        break;
      case v1::FetchMessageRequest::PART_SECTION:
        return absl::InvalidArgumentError("part: PART_WHOLE or PART_HEADERS (sections: FetchMessage)");
      default:
        break;
    }
    ASSIGN_OR_RETURN(chunk_size_, ValidateChunkSize(request_->chunk_size()));
    return absl::OkStatus();
  }

  absl::Status Stream(ImapSession& session, const std::function<void(uint64_t)>& on_bytes, uint64_t* messages) {
    // Bytes of data and metadata in Current(): metadata counts too, so that
    // a response of many messages with many flags still fits the caller's
    // limit.
    size_t buffered = 0;
    auto flush_if_full = [&]() -> absl::Status {
      if (buffered < chunk_size_) return absl::OkStatus();
      buffered = 0;
      return Send();
    };
    // The piece that data goes to: the current message's, in this buffer.
    bool open_piece = false;
    auto start = [&](const MailFetchStart& message) -> absl::Status {
      v1::FetchMetadata* metadata = Current().add_pieces()->mutable_metadata();
      SetMetadata(message, metadata);
      buffered += metadata->ByteSizeLong();
      open_piece = buffered < chunk_size_;
      return flush_if_full();
    };
    auto sink = [&](absl::string_view chunk) -> absl::Status {
      if (!open_piece) Current().add_pieces();
      v1::FetchPiece* piece = Current().mutable_pieces(Current().pieces_size() - 1);
      piece->mutable_data()->append(chunk.data(), chunk.size());
      if (on_bytes) on_bytes(chunk.size());
      buffered += chunk.size();
      // A full buffer is sent: the next bytes start a new piece in the other.
      open_piece = buffered < chunk_size_;
      return flush_if_full();
    };
    absl::StatusOr<uint64_t> fetched =
        Mailbox(session).FetchMany(request_->folder(), request_->uid_validity(),
                                   {request_->uids().begin(), request_->uids().end()}, section_, chunk_size_, start, sink);
    absl::Status idle = AwaitIdle();
    if (!fetched.ok()) return fetched.status();
    *messages = *fetched;
    return idle;
  }

  const v1::FetchMessagesRequest* request_;
  std::string section_;
  size_t chunk_size_ = 0;
  uint64_t messages_ = 0;
};

// One caller's watch of a folder: the events MailboxWatches tells, queued
// and written one at a time. At most max_queued_ wait: the watch sends no new
// message to a watcher without Room() and resumes it once it drained half
// its queue; a caller that lets expunges and flag changes pile up past it
// is ended (watch again from the last UID received).
class MailServiceImpl::WatchWriter final : public QueuedWriteReactor<v1::MailboxEvent>, public MailboxWatcher {
 public:
  static constexpr absl::string_view kMethod = "MailService/WatchMailbox";

  WatchWriter(MailServiceImpl* service, grpc::CallbackServerContext* context, const v1::WatchMailboxRequest* request)
      : QueuedWriteReactor(service->watch_queue_), service_(service), context_(context), request_(request) {
    absl::StatusOr<CallContext> call = service->Admit(context, kMethod, request->grant());
    if (!call.ok()) {
      Begun(call.status());
      return;
    }
    call_ = *call;
    audit_ = true;
    absl::Status status = ValidateId("grant", request->grant());
    if (status.ok()) status = ValidateFolder(request->folder());
    if (status.ok() && service->watches_ == nullptr) status = absl::UnimplementedError("mailbox watches are off");
    if (status.ok()) {
      MailboxWatches::Request watch{request->grant(), request->folder(), request->since_uid(), request->uid_validity()};
      absl::StatusOr<uint64_t> id = service->watches_->Subscribe(watch, this);
      if (id.ok()) {
        absl::MutexLock lock(&mu_);
        subscription_ = *id;
      }
      status = id.status();
    }
    Begun(status);
  }

  void OnLive(uint32_t uid_validity) override {
    absl::MutexLock lock(&mu_);
    uid_validity_ = uid_validity;
    if (!MetadataSentLocked() && !FinishedLocked()) {
      // The caller learns that every change from now on will come, and the
      // folder's UIDVALIDITY (to keep with the last UID it reads).
      context_->AddInitialMetadata("uid-validity", std::to_string(uid_validity));
      SendMetadataLocked();
    }
  }

  void OnEvent(const MailboxEvent& event) override {
    v1::MailboxEvent out;
    out.set_uid_validity(event.uid_validity);
    switch (event.kind) {
      case MailboxEvent::Kind::kNewMessage:
        SummaryToProto(event.summary, out.mutable_new_message());
        break;
      case MailboxEvent::Kind::kExpunged:
        out.set_expunged_uid(event.uid);
        break;
      case MailboxEvent::Kind::kFlagsChanged:
        out.mutable_flags_changed()->set_uid(event.uid);
        for (const std::string& f : event.flags) out.mutable_flags_changed()->add_flags(f);
        break;
      case MailboxEvent::Kind::kResync:
        out.mutable_resync();
        break;
    }
    absl::MutexLock lock(&mu_);
    (void)PushLocked(std::move(out));
  }

  void OnEnd(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  size_t Room() override {
    absl::MutexLock lock(&mu_);
    if (EndingLocked()) return 0;
    const size_t room = max_queued_ - std::min(max_queued_, QueuedLocked());
    if (room == 0) starved_ = true;
    return room;
  }

  void OnDone() override {
    uint64_t subscription;
    uint64_t events;
    {
      absl::MutexLock lock(&mu_);
      subscription = subscription_;
      events = written_;
    }
    // After it, the watch never calls this writer again.
    if (subscription != 0) service_->watches_->Unsubscribe(subscription);
    if (audit_) {
      service_->guard_->Audit(call_, kMethod, Action::kMailRead, request_->grant(), final_, "",
                              absl::StrCat(request_->folder(), ": ", events, " events"));
    }
    delete this;
  }

 private:
  void Begun(const absl::Status& status) {
    if (status.ok()) return;
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }

  absl::Status OverflowStatusLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the watcher fell more than ", max_queued_, " events behind; watch again with since_uid ",
                     last_new_uid_, " and uid_validity ", uid_validity_, " to get the rest"));
  }

  void WritingLocked(const v1::MailboxEvent& event) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (event.has_new_message()) last_new_uid_ = event.new_message().uid();
  }

  // A watcher the watch found without room is sent more once half its
  // queue went out.
  void AfterWriteLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (starved_ && !FinishedLocked() && QueuedLocked() <= max_queued_ / 2) {
      starved_ = false;
      resume_ = subscription_;
    }
  }
  // Not under mu_: the watch calls this writer under its own lock.
  void AfterWrite() override {
    uint64_t resume;
    {
      absl::MutexLock lock(&mu_);
      resume = resume_;
      resume_ = 0;
    }
    if (resume != 0) service_->watches_->Resume(resume);
  }

  MailServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::WatchMailboxRequest* const request_;
  CallContext call_;
  bool audit_ = false;

  uint64_t subscription_ ABSL_GUARDED_BY(mu_) = 0;
  // Room() said 0: Resume the watch once the queue has drained a little.
  bool starved_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t resume_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t last_new_uid_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t uid_validity_ ABSL_GUARDED_BY(mu_) = 0;
};

grpc::ServerWriteReactor<v1::MailboxEvent>* MailServiceImpl::WatchMailbox(grpc::CallbackServerContext* context,
                                                                         const v1::WatchMailboxRequest* request) {
  return new WatchWriter(this, context, request);
}

grpc::ServerWriteReactor<v1::FetchMessageResponse>* MailServiceImpl::FetchMessageLater(
    grpc::CallbackServerContext* context, const v1::FetchMessageRequest* request) {
  return new FetchReactor(this, context, request);
}

grpc::Status MailServiceImpl::FetchMessageHere(grpc::ServerContext* context, const v1::FetchMessageRequest& request,
                                               FetchMessageThreads::Writer& writer) {
  static constexpr absl::string_view kMethod = "MailService/FetchMessage";
  absl::StatusOr<CallContext> call = Admit(context, kMethod, request.grant());
  if (!call.ok()) return ToGrpcStatus(call.status());
  absl::StatusOr<FetchRequest> fetch = CheckFetchMessage(request);
  if (!fetch.ok()) {
    guard_->Audit(*call, kMethod, Action::kMailRead, request.grant(), fetch.status());
    return ToGrpcStatus(fetch.status());
  }
  // A whole small message's first write usually completes at once here (on
  // this thread, unless another call is writing on the same connection;
  // measured: about two context switches a call fewer than sending the
  // metadata as the message starts).
  OneMessageStream<FetchMessageThreads::Writer> stream(writer);
  const absl::Status status = pool_->Run(
      request.grant(), "fetch",
      [&](ImapSession& session) {
        return stream.Run(session, request, fetch->section, fetch->chunk_size, on_fetched_bytes_);
      },
      [&] { return !writer.sent_any(); });
  guard_->Audit(*call, kMethod, Action::kMailRead, request.grant(), status, "",
                status.ok() ? absl::StrCat("uid ", request.uid()) : std::string(status.message()));
  if (status.ok() && stream.whole()) {
    writer.SendTwoWithStatus();
  } else if (status.ok() && stream.last()) {
    writer.SendCurrentWithStatus();
  }
  return ToGrpcStatus(status);
}

namespace {

constexpr absl::string_view kGetMessage = "MailService/GetMessage";

// What a GetMessage request asks for, checked.
struct WholeMessage {
  std::string section;
  uint64_t max_size = 0;
};

absl::StatusOr<WholeMessage> CheckGetMessage(const v1::GetMessageRequest& request) {
  WholeMessage whole;
  ASSIGN_OR_RETURN(whole.section, ValidateOneMessage(request));
  ASSIGN_OR_RETURN(whole.max_size, ValidateMaxSize(request.max_size()));
  return whole;
}

}  // namespace

grpc::ServerUnaryReactor* MailServiceImpl::GetMessageLater(grpc::CallbackServerContext* context,
                                                           const v1::GetMessageRequest* request,
                                                           v1::GetMessageResponse* response) {
  absl::StatusOr<CallContext> call = Admit(context, kGetMessage, request->grant());
  if (!call.ok()) return FinishUnary(context, ToGrpcStatus(call.status()));
  absl::StatusOr<WholeMessage> whole = CheckGetMessage(*request);
  // On the stream executor: it reads a message body, as the fetches do.
  return LaterOn(
      stream_workers_, context, *call, kGetMessage, request->grant(), whole.status(),
      [this, request, response, whole = whole.value_or(WholeMessage{})] {
        return ReadWhole(*request, whole.section, whole.max_size, response);
      },
      absl::StrCat("uid ", request->uid()));
}

grpc::Status MailServiceImpl::GetMessageHere(grpc::ServerContext* context, const v1::GetMessageRequest& request,
                                             v1::GetMessageResponse* response) {
  absl::StatusOr<CallContext> call = Admit(context, kGetMessage, request.grant());
  if (!call.ok()) return ToGrpcStatus(call.status());
  absl::StatusOr<WholeMessage> whole = CheckGetMessage(request);
  const absl::Status status =
      whole.ok() ? ReadWhole(request, whole->section, whole->max_size, response) : whole.status();
  guard_->Audit(*call, kGetMessage, Action::kMailRead, request.grant(), status, "",
                status.ok() ? absl::StrCat("uid ", request.uid()) : "");
  return ToGrpcStatus(status);
}

absl::Status MailServiceImpl::ReadWhole(const v1::GetMessageRequest& request, absl::string_view section,
                                        uint64_t max_size, v1::GetMessageResponse* response) {
  absl::Status status = pool_->Run(request.grant(), "fetch", [&](ImapSession& session) {
    return FetchWhole(session, request, section, max_size, response);
  });
  if (status.ok() && on_fetched_bytes_) on_fetched_bytes_(response->data().size());
  return status;
}

grpc::ServerWriteReactor<v1::FetchMessagesResponse>* MailServiceImpl::FetchMessages(
    grpc::CallbackServerContext* context, const v1::FetchMessagesRequest* request) {
  return new FetchManyReactor(this, context, request);
}

}  // namespace tokenbroker
