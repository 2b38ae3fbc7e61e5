#include "service/api/mail_service.h"

#include "service/api/reactors.h"

namespace tokenbroker {
namespace {
constexpr char kCapability[] = "IMAP fetch arrives with the mail service";
}  // namespace

grpc::ServerUnaryReactor* MailServiceImpl::ListFolders(grpc::CallbackServerContext* context,
                                                       const v1::ListFoldersRequest*, v1::ListFoldersResponse*) {
  return FinishUnary(context, NotYetAvailable("ListFolders", kCapability));
}

grpc::ServerUnaryReactor* MailServiceImpl::GetFolderStatus(grpc::CallbackServerContext* context,
                                                           const v1::GetFolderStatusRequest*, v1::FolderStatus*) {
  return FinishUnary(context, NotYetAvailable("GetFolderStatus", kCapability));
}

grpc::ServerUnaryReactor* MailServiceImpl::SearchMessages(grpc::CallbackServerContext* context,
                                                          const v1::SearchMessagesRequest*,
                                                          v1::SearchMessagesResponse*) {
  return FinishUnary(context, NotYetAvailable("SearchMessages", kCapability));
}

grpc::ServerWriteReactor<v1::FetchMessageResponse>* MailServiceImpl::FetchMessage(grpc::CallbackServerContext*,
                                                                                  const v1::FetchMessageRequest*) {
  return new FinishedWriteReactor<v1::FetchMessageResponse>(NotYetAvailable("FetchMessage", kCapability));
}

}  // namespace tokenbroker
