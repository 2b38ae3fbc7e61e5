// tokenbroker.v1.MailService over the callback API. The IMAP work runs on
// threads of the service's own (it blocks on the network), never on gRPC's
// callback threads: the worker pools, and for GetMessage and FetchMessage (by
// default) threads that take their calls straight from gRPC's async API and
// answer them with no hand-off (OwnThreadUnary, OwnThreadStream). FetchMessage streams
// each chunk as the mail server sends it and waits for the client to take it
// before reading more, so memory stays flat whatever the message size;
// GetMessage returns a message of up to 4 MB whole, in one response. Caller
// strings are checked before any work is queued.
#ifndef TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
#define TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_

#include <algorithm>
#include <functional>
#include <memory>

#include "service/api/call_guard.h"
#include "service/api/one_message_defaults.h"
#include "service/api/own_thread_stream.h"
#include "service/api/own_thread_unary.h"
#include "service/common/executor.h"
#include "service/mail/mail_pool.h"
#include "service/mail/mailbox_watch.h"
#include "tokenbroker/v1/mail_service.grpc.pb.h"

namespace tokenbroker {

struct MailServiceOptions {
  // Workers for the short calls (folders, status, search) and, apart, for
  // the fetches that stream message bodies, so that long streams can never
  // take every worker from the short calls.
  int workers = 8;
  int stream_workers = 8;
  // Calls queued for a worker, at most; then RESOURCE_EXHAUSTED.
  size_t max_pending = 10000;
  // WatchMailbox: events queued for one caller, at most (see WatchWriter).
  size_t watch_queue = 1000;
  // GetMessage on this many threads of its own, each taking calls from a
  // completion queue of its own and answering them itself (no stream worker,
  // and the call's completion comes back to the thread's own queue); the
  // server's owner then calls AddCompletionQueues, StartThreads and
  // StopThreads. 0: on the callback API and the stream workers.
  int get_message_threads = kDefaultGetMessageThreads;
  // The same for FetchMessage (OwnThreadStream: the thread also writes the
  // responses and waits for each write on its own queue). 0: on the
  // callback API and the stream workers.
  int fetch_message_threads = kDefaultFetchMessageThreads;
  // Whether those threads (both methods') wait in gRPC's poller (no
  // hand-off at all for a call, but they read other calls' events too,
  // which costs those calls) or on queues that do not poll (woken by gRPC's
  // callback threads; idle, they cost nothing). See OwnThreads.
  bool get_message_threads_poll = kDefaultGetMessageThreadsPoll;
};

// Every method on the callback API but GetMessage and FetchMessage, which
// the constructor makes callback or async methods (MailServiceOptions).
using MailServiceBase =
    v1::MailService::WithCallbackMethod_ListFolders<v1::MailService::WithCallbackMethod_GetFolderStatus<
        v1::MailService::WithCallbackMethod_SearchMessages<v1::MailService::WithCallbackMethod_FetchMessages<
            v1::MailService::WithCallbackMethod_WatchMailbox<v1::MailService::Service>>>>>;

class MailServiceImpl final : public MailServiceBase {
 public:
  // `pool` and `guard` must outlive the service. `on_fetched_bytes` counts
  // streamed bytes.
  MailServiceImpl(MailPool* pool, CallGuard* guard, MailServiceOptions options = {},
                  std::function<void(uint64_t)> on_fetched_bytes = nullptr, MailboxWatches* watches = nullptr);

  // With MailServiceOptions' threads (no-ops without): before
  // the server is built, its completion queues; after it started, the
  // threads; after its Shutdown and Wait returned, they stop.
  void AddCompletionQueues(grpc::ServerBuilder& builder);
  void StartThreads();
  void StopThreads();

  grpc::ServerUnaryReactor* ListFolders(grpc::CallbackServerContext* context, const v1::ListFoldersRequest* request,
                                        v1::ListFoldersResponse* response) override;
  grpc::ServerUnaryReactor* GetFolderStatus(grpc::CallbackServerContext* context,
                                            const v1::GetFolderStatusRequest* request,
                                            v1::FolderStatus* response) override;
  grpc::ServerUnaryReactor* SearchMessages(grpc::CallbackServerContext* context,
                                           const v1::SearchMessagesRequest* request,
                                           v1::SearchMessagesResponse* response) override;
  grpc::ServerWriteReactor<v1::FetchMessagesResponse>* FetchMessages(grpc::CallbackServerContext* context,
                                                                     const v1::FetchMessagesRequest* request) override;
  // `watches` (nullptr: UNIMPLEMENTED) must outlive the service.
  grpc::ServerWriteReactor<v1::MailboxEvent>* WatchMailbox(grpc::CallbackServerContext* context,
                                                           const v1::WatchMailboxRequest* request) override;

 private:
  template <typename Response>
  class StreamingFetch;
  class FetchReactor;
  class FetchManyReactor;
  class WatchWriter;
  // GetMessage on the callback API: admitted there, read on a stream worker.
  grpc::ServerUnaryReactor* GetMessageLater(grpc::CallbackServerContext* context, const v1::GetMessageRequest* request,
                                            v1::GetMessageResponse* response);
  // GetMessage on one of its own threads: admitted, read and audited there.
  grpc::Status GetMessageHere(grpc::ServerContext* context, const v1::GetMessageRequest& request,
                              v1::GetMessageResponse* response);
  using FetchMessageThreads = OwnThreadStream<v1::FetchMessageRequest, v1::FetchMessageResponse>;
  // FetchMessage on the callback API: admitted there, streamed from a stream
  // worker.
  grpc::ServerWriteReactor<v1::FetchMessageResponse>* FetchMessageLater(grpc::CallbackServerContext* context,
                                                                        const v1::FetchMessageRequest* request);
  // FetchMessage on one of its own threads: admitted, streamed and audited
  // there.
  grpc::Status FetchMessageHere(grpc::ServerContext* context, const v1::FetchMessageRequest& request,
                                FetchMessageThreads::Writer& writer);
  // The message whole into `response` over a pooled session (both ways).
  absl::Status ReadWhole(const v1::GetMessageRequest& request, absl::string_view section, uint64_t max_size,
                         v1::GetMessageResponse* response);
  // Admits the call (CallGuard) and checks that it carries a deadline (IMAP
  // work holds a connection: a call without one could hold it forever).
  absl::StatusOr<CallContext> Admit(grpc::ServerContextBase* context, absl::string_view method,
                                    absl::string_view grant);
  // Runs `work` on a worker, audits and finishes the call with its status;
  // `invalid` (request checks) finishes it at once.
  grpc::ServerUnaryReactor* Later(grpc::CallbackServerContext* context, const CallContext& call,
                                  absl::string_view method, const std::string& grant, const absl::Status& invalid,
                                  std::function<absl::Status()> work);
  // The same on `executor` (Later: the short calls' workers); a success is
  // audited with `detail` when one is given.
  grpc::ServerUnaryReactor* LaterOn(Executor& executor, grpc::CallbackServerContext* context, const CallContext& call,
                                    absl::string_view method, const std::string& grant, const absl::Status& invalid,
                                    std::function<absl::Status()> work, std::string detail = "");

  MailPool* pool_;
  CallGuard* guard_;
  MailboxWatches* watches_;
  const size_t watch_queue_;
  std::function<void(uint64_t)> on_fetched_bytes_;
  // Declared last: stopped (every queued call finished) before the rest goes.
  Executor workers_;
  Executor stream_workers_;
  // With get_message_threads, fetch_message_threads only.
  using GetMessageThreads = OwnThreadUnary<v1::GetMessageRequest, v1::GetMessageResponse>;
  std::unique_ptr<GetMessageThreads> get_message_threads_;
  std::unique_ptr<FetchMessageThreads> fetch_message_threads_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
