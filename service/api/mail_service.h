// tokenbroker.v1.MailService over the callback API.
#ifndef TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
#define TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_

#include "tokenbroker/v1/mail_service.grpc.pb.h"

namespace tokenbroker {

class MailServiceImpl final : public v1::MailService::CallbackService {
 public:
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
};

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_API_MAIL_SERVICE_H_
