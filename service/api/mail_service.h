// tokenbroker.v1.MailService over the callback API. The IMAP work runs on a
// pool of worker threads (it blocks on the network), never on gRPC's
// callback threads; FetchMessage streams each chunk as the mail server sends
// it and waits for the client to take it before reading more, so memory stays
// flat whatever the message size. Caller strings are checked before any work
// is queued.
#ifndef TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
#define TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_

#include <functional>

#include "service/common/executor.h"
#include "service/mail/mail_pool.h"
#include "tokenbroker/v1/mail_service.grpc.pb.h"

namespace tokenbroker {

class MailServiceImpl final : public v1::MailService::CallbackService {
 public:
  // `pool` must outlive the service. `on_fetched_bytes` counts streamed bytes.
  explicit MailServiceImpl(MailPool* pool, int threads = 8, std::function<void(uint64_t)> on_fetched_bytes = nullptr)
      : pool_(pool), on_fetched_bytes_(std::move(on_fetched_bytes)), workers_(threads, 10000) {}

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

 private:
  class FetchReactor;
  // Runs `work` on a worker and finishes the call with its status.
  grpc::ServerUnaryReactor* Later(grpc::CallbackServerContext* context, std::function<absl::Status()> work);

  MailPool* pool_;
  std::function<void(uint64_t)> on_fetched_bytes_;
  // Declared last: stopped (every queued call finished) before the rest goes.
  Executor workers_;
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
