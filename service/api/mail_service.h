// tokenbroker.v1.MailService over the callback API. The IMAP work runs on a
// pool of worker threads (it blocks on the network), never on gRPC's
// callback threads; FetchMessage streams each chunk as the mail server sends
// it and waits for the client to take it before reading more, so memory stays
// flat whatever the message size; GetMessage returns a message of up to
// 4 MB whole, in one response. Caller strings are checked before any work
// is queued.
#ifndef TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
#define TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_

#include <algorithm>
#include <functional>

#include "service/api/call_guard.h"
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
};

class MailServiceImpl final : public v1::MailService::CallbackService {
 public:
  // `pool` and `guard` must outlive the service. `on_fetched_bytes` counts
  // streamed bytes.
  MailServiceImpl(MailPool* pool, CallGuard* guard, MailServiceOptions options = {},
                  std::function<void(uint64_t)> on_fetched_bytes = nullptr, MailboxWatches* watches = nullptr)
      : pool_(pool),
        guard_(guard),
        watches_(watches),
        watch_queue_(std::max<size_t>(2, options.watch_queue)),
        on_fetched_bytes_(std::move(on_fetched_bytes)),
        workers_(options.workers, options.max_pending),
        stream_workers_(options.stream_workers, options.max_pending) {}

  grpc::ServerUnaryReactor* ListFolders(grpc::CallbackServerContext* context, const v1::ListFoldersRequest* request,
                                        v1::ListFoldersResponse* response) override;
  grpc::ServerUnaryReactor* GetFolderStatus(grpc::CallbackServerContext* context,
                                            const v1::GetFolderStatusRequest* request,
                                            v1::FolderStatus* response) override;
  grpc::ServerUnaryReactor* SearchMessages(grpc::CallbackServerContext* context,
                                           const v1::SearchMessagesRequest* request,
                                           v1::SearchMessagesResponse* response) override;
  grpc::ServerWriteReactor<v1::FetchMessageResponse>* FetchMessage(grpc::CallbackServerContext* context,
                                                                   const v1::FetchMessageRequest* request) override;
  grpc::ServerUnaryReactor* GetMessage(grpc::CallbackServerContext* context, const v1::GetMessageRequest* request,
                                       v1::GetMessageResponse* response) override;
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
  // Admits the call (CallGuard) and checks that it carries a deadline (IMAP
  // work holds a connection: a call without one could hold it forever).
  absl::StatusOr<CallContext> Admit(grpc::CallbackServerContext* context, absl::string_view method,
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
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
