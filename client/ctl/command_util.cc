#include "client/ctl/command_util.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "service/common/files.h"

namespace tokenbroker::ctl {

int WrongArgs(Context& ctx, const std::string& path, const std::string& what) {
  ctx.err() << "tokenbrokerctl " << path << ": " << what << "\nRun 'tokenbrokerctl " << path
            << " --help' for usage.\n";
  return kExitUsage;
}

absl::StatusOr<std::string> ReadInputFile(const std::string& flag, const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<Secret> ReadSecretInput(const std::string& flag, const std::string& path) {
  if (path != "-") {
    absl::StatusOr<Secret> secret = ReadSecretFile(path);
    if (!secret.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": ", absl::IsInvalidArgument(secret.status()) ? secret.status().message()
                                                             : absl::StrCat("cannot read ", path)));
    }
    return secret;
  }
  std::string text(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": standard input is empty"));
  return Secret(std::move(text));
}

}  // namespace tokenbroker::ctl
