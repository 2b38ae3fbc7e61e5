// Many grants from one file: `tokenbrokerctl grant create|import --from-file`.
// Each line of the file is one grant as a JSON object whose keys are the
// single-grant command's flags (see ParseGrantLine); the grants are sent with
// a few calls in flight, so that a migration of 100,000 mailboxes takes
// minutes, not a process per grant. A line that fails is reported by number
// (never with its refresh token) and the rest go on.
#ifndef TOKENBROKER_CLIENT_CTL_GRANT_FILE_H_
#define TOKENBROKER_CLIENT_CTL_GRANT_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/ctl/command.h"
#include "service/common/secret.h"

namespace tokenbroker::ctl {

struct GrantLine {
  v1::Grant grant;
  // import: the refresh token (required); create: empty.
  Secret refresh_token;
};

// One line: {"grant": ID, "app": APP, "mailbox": ADDRESS, "scopes": [..],
// "labels": {..}} and, for import, "refresh_token" (the token as it is, not
// encoded), for create "kind" (app_only or service_account) and "subject".
// INVALID_ARGUMENT naming the key; the message never holds a value from the
// line (a misplaced token must not reach a terminal or a log).
absl::StatusOr<GrantLine> ParseGrantLine(absl::string_view line, bool import);

struct GrantFileOptions {
  std::string path;  // a file, or "-" for standard input
  bool import = false;
  int parallel = 8;
  // Counts a grant that exists already (ALREADY_EXISTS) as done, not failed,
  // so that an interrupted run can be started again on the same file.
  bool skip_existing = false;
  // import only: applied to every line.
  bool replace = false;
  bool verify = false;
};

// Sends every grant in the file; failures go to standard error as they come
// ("line 7 (grant "g7"): ALREADY_EXISTS: ..."), a summary to standard output.
// kExitOk when none failed, kExitFailure otherwise.
int EnrolGrantsFromFile(Context& ctx, const GrantFileOptions& options);

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_GRANT_FILE_H_
