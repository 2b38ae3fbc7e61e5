#include "client/ctl/command_util.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

std::string FitColumn(absl::string_view text, size_t width) {
  std::string out;
  size_t shown = 0;
  for (size_t i = 0; i < text.size() && shown < width;) {
    // One code point: a lead byte and its continuation bytes (10xxxxxx).
    size_t end = i + 1;
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    if (lead >= 0x20 && lead != 0x7F) {
      out.append(text.data() + i, end - i);
    } else {
      out.push_back('?');  // a control character would break the line
    }
    ++shown;
    i = end;
  }
  out.append(width - shown, ' ');
  return out;
}

std::string DisplayName(absl::string_view name) {
  const bool plain = !name.empty() && name.front() != ' ' && name.back() != ' ' && name.front() != '"' &&
                     name.find_first_of("\t\r\n") == absl::string_view::npos;
  if (plain) return std::string(name);
  std::string out = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r' || c == '\n') {
      out += c == '\r' ? "\\r" : "\\n";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string UidRanges(const std::vector<uint32_t>& sorted_uids) {
  std::string out;
  for (size_t i = 0; i < sorted_uids.size();) {
    size_t j = i;
    while (j + 1 < sorted_uids.size() && sorted_uids[j + 1] == sorted_uids[j] + 1) ++j;
    absl::StrAppend(&out, out.empty() ? "" : ",", sorted_uids[i]);
    if (j > i) absl::StrAppend(&out, ":", sorted_uids[j]);
    i = j + 1;
  }
  return out;
}

namespace {
std::string Megabytes(uint64_t bytes) { return absl::StrFormat("%.1f MB", static_cast<double>(bytes) / 1e6); }
}  // namespace

std::string ProgressText(uint64_t bytes, uint64_t bytes_total, uint64_t messages, uint64_t messages_total,
                         absl::Duration elapsed) {
  std::string out;
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(bytes) / seconds : 0;
  if (messages_total > 0) {
    out = absl::StrCat(messages, " of ", messages_total, " messages, ", Megabytes(bytes));
  } else if (bytes_total > 0) {
    out = absl::StrCat(Megabytes(bytes), " of ", Megabytes(bytes_total));
  } else {
    out = Megabytes(bytes);
  }
  if (rate > 0) absl::StrAppend(&out, ", ", absl::StrFormat("%.1f MB/s", rate / 1e6));
  // Time left: by bytes when their total is known, else by messages.
  double left = -1;
  if (bytes_total > 0 && rate > 0 && bytes <= bytes_total) {
    left = static_cast<double>(bytes_total - bytes) / rate;
  } else if (messages_total > 0 && messages > 0 && messages <= messages_total && seconds > 0) {
    left = static_cast<double>(messages_total - messages) * seconds / static_cast<double>(messages);
  }
  if (left >= 0) absl::StrAppend(&out, ", ", static_cast<int64_t>(left + 0.5), "s left");
  return out;
}

bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

void ProgressLine::Update(uint64_t bytes, uint64_t bytes_total, uint64_t messages, uint64_t messages_total) {
  if (!enabled_) return;
  const absl::Time now = absl::Now();
  if (now - drawn_ < absl::Milliseconds(200)) return;
  drawn_ = now;
  const std::string text = ProgressText(bytes, bytes_total, messages, messages_total, now - start_);
  err_ << "\r" << text << std::string(width_ > text.size() ? width_ - text.size() : 0, ' ') << std::flush;
  width_ = text.size();
}

void ProgressLine::Clear() {
  if (!enabled_ || width_ == 0) return;
  err_ << "\r" << std::string(width_, ' ') << "\r" << std::flush;
  width_ = 0;
}

}  // namespace tokenbroker::ctl
