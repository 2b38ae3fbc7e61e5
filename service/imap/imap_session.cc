#include "service/imap/imap_session.h"

#include "service/common/sasl.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/imap/imap_text.h"

namespace tokenbroker {
namespace {

constexpr size_t kMaxLineBytes = 1 << 20;        // a response line (literals excluded)
constexpr size_t kMaxKeptLiteral = 64 << 20;     // literals kept in memory (not streamed)
constexpr size_t kMaxStringArgument = 1000;      // caller strings in commands

std::string Upper(absl::string_view s) { return absl::AsciiStrToUpper(s); }

std::vector<ImapAddress> Addresses(const ImapValue& v) {
  std::vector<ImapAddress> out;
  if (v.kind != ImapValue::Kind::kList) return out;
  for (const ImapValue& a : v.list) {
    if (a.kind != ImapValue::Kind::kList || a.list.size() < 4) continue;
    // (name adl mailbox host); a NIL host marks RFC 2822 group syntax.
    if (a.list[3].kind == ImapValue::Kind::kNil) continue;
    out.push_back(ImapAddress{DecodeEncodedWords(a.list[0].Str()),
                              absl::StrCat(a.list[2].Str(), "@", a.list[3].Str())});
  }
  return out;
}

ImapEnvelope Envelope(const ImapValue& v) {
  ImapEnvelope e;
  if (v.kind != ImapValue::Kind::kList || v.list.size() < 10) return e;
  e.date = v.list[0].Str();
  e.subject = DecodeEncodedWords(v.list[1].Str());
  e.from = Addresses(v.list[2]);
  e.sender = Addresses(v.list[3]);
  e.reply_to = Addresses(v.list[4]);
  e.to = Addresses(v.list[5]);
  e.cc = Addresses(v.list[6]);
  e.bcc = Addresses(v.list[7]);
  e.in_reply_to = v.list[8].Str();
  e.message_id = v.list[9].Str();
  return e;
}

}  // namespace

absl::Status ValidateImapSection(absl::string_view section) {
  // "", "HEADER", "TEXT", or a part number like 1.2 (optionally .MIME/.HEADER/.TEXT).
  if (section.empty() || section == "HEADER" || section == "TEXT") return absl::OkStatus();
  bool digit_expected = true;
  for (size_t i = 0; i < section.size(); ++i) {
    const char c = section[i];
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit_expected = false;
    } else if (c == '.' && !digit_expected) {
      const absl::string_view rest = section.substr(i + 1);
      if (rest == "MIME" || rest == "HEADER" || rest == "TEXT") return absl::OkStatus();
      digit_expected = true;
    } else {
      break;
    }
    if (i + 1 == section.size() && !digit_expected) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("part: \"", section, "\" is not a body part (expected a number like 1 or 1.2)"));
}

namespace {

// UID, flags, size, internal date and envelope of one FETCH response (what
// it carries of them).
ImapMessageSummary SummaryOf(const ImapResponse& r) {
  ImapMessageSummary m;
  for (const auto& [name, value] : FetchAttributes(r)) {
    if (name == "UID") m.uid = static_cast<uint32_t>(value->Number().value_or(0));
    if (name == "FLAGS") {
      for (const ImapValue& f : value->list) m.flags.push_back(f.text);
    }
    if (name == "RFC822.SIZE") m.size = value->Number().value_or(0);
    if (name == "INTERNALDATE") m.internal_date = value->Str();
    if (name == "ENVELOPE") m.envelope = Envelope(*value);
  }
  return m;
}

std::string ImapDate(absl::Time t) { return absl::FormatTime("%d-%b-%Y", t, absl::UTCTimeZone()); }

}  // namespace

absl::Status ImapCommandFailure(const ImapResponse& r, absl::string_view command) {
  const std::string what = absl::StrCat("the IMAP server refused ", command, ": ", r.status, " ",
                                        r.code.empty() ? "" : absl::StrCat("[", r.code, "] "), r.text);
  if (r.code == "NONEXISTENT" || r.code == "TRYCREATE") return absl::NotFoundError(what);
  if (r.code == "AUTHENTICATIONFAILED" || r.code == "AUTHORIZATIONFAILED" || r.code == "EXPIRED") {
    return absl::UnauthenticatedError(what);
  }
  if (r.code == "UNAVAILABLE" || r.code == "SERVERBUG" || r.status == "BYE") return absl::UnavailableError(what);
  if (r.code == "LIMIT" || r.code == "OVERQUOTA") return absl::ResourceExhaustedError(what);
  if (r.status == "BAD" && absl::StrContains(absl::AsciiStrToLower(r.text), "authenticated but not connected")) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " (Exchange accepted the token but not the mailbox: for app-only access grant the app's service "
              "principal access with New-ServicePrincipal -AppId ... -ObjectId <Enterprise Application object id> "
              "and Add-MailboxPermission -AccessRights FullAccess; for delegated access check that the token's user "
              "is the mailbox's)"));
  }
  return absl::FailedPreconditionError(what);
}

absl::StatusOr<std::unique_ptr<ImapSession>> ImapSession::Open(const ImapServer& server) {
  ASSIGN_OR_RETURN(std::unique_ptr<TcpTlsTransport> transport,
                   TcpTlsTransport::Connect(server.host, server.port, server.connect_timeout, server.io_timeout));
  TcpTlsTransport* tcp = transport.get();
  if (!server.starttls) RETURN_IF_ERROR(tcp->StartTls(server.host, server.ca_file));
  auto session = std::unique_ptr<ImapSession>(new ImapSession(std::move(transport), server));
  ASSIGN_OR_RETURN(ImapResponse greeting, session->ReadResponse());
  if (greeting.type != ImapResponse::Type::kUntagged || greeting.status != "OK") {
    return ImapCommandFailure(greeting, "the connection");
  }
  RETURN_IF_ERROR(session->ReadCapabilities(greeting));
  if (server.starttls) {
    if (session->capabilities_.count("STARTTLS") == 0) {
      return absl::FailedPreconditionError(absl::StrCat("IMAP server ", server.host, ":", server.port,
                                                        " does not offer STARTTLS; use implicit TLS (port 993)"));
    }
    ASSIGN_OR_RETURN(Reply reply, session->Run({"STARTTLS"}));
    if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "STARTTLS");
    if (session->offset_ != session->buffer_.size()) {
      return absl::UnavailableError("the IMAP server sent data before the TLS handshake (STARTTLS injection?)");
    }
    RETURN_IF_ERROR(tcp->StartTls(server.host, server.ca_file));
    session->capabilities_.clear();
    RETURN_IF_ERROR(session->ReadCapabilities(ImapResponse{}));
  }
  return session;
}

absl::StatusOr<std::unique_ptr<ImapSession>> ImapSession::OpenOver(std::unique_ptr<ImapTransport> transport,
                                                                    const ImapServer& server) {
  auto session = std::unique_ptr<ImapSession>(new ImapSession(std::move(transport), server));
  ASSIGN_OR_RETURN(ImapResponse greeting, session->ReadResponse());
  if (greeting.status != "OK") return ImapCommandFailure(greeting, "the connection");
  RETURN_IF_ERROR(session->ReadCapabilities(greeting));
  return session;
}

absl::Status ImapSession::ReadCapabilities(const ImapResponse& greeting) {
  if (greeting.code == "CAPABILITY") {
    for (const ImapValue& v : greeting.code_args) capabilities_.insert(Upper(v.text));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Reply reply, Run({"CAPABILITY"}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "CAPABILITY");
  for (const ImapResponse& r : reply.untagged) {
    if (r.name != "CAPABILITY") continue;
    for (const ImapValue& v : r.values) capabilities_.insert(Upper(v.text));
  }
  return absl::OkStatus();
}

absl::Status ImapSession::Fail(absl::Status status) {
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) || absl::IsDataLoss(status)) usable_ = false;
  return status;
}

absl::Status ImapSession::Fill() {
  // Drop what was consumed: a reply of many small messages would otherwise
  // keep all of them in the buffer until its end.
  if (offset_ > 0 && (offset_ == buffer_.size() || offset_ >= 64 * 1024)) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  char chunk[64 * 1024];
  absl::StatusOr<size_t> n = transport_->Read(chunk, sizeof chunk);
  if (!n.ok()) return Fail(n.status());
  if (*n == 0) return Fail(absl::UnavailableError("the IMAP server closed the connection"));
  buffer_.append(chunk, *n);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ImapSession::ReadLine() {
  while (true) {
    const size_t eol = buffer_.find("\r\n", offset_);
    if (eol != std::string::npos) {
      std::string line = buffer_.substr(offset_, eol + 2 - offset_);
      offset_ = eol + 2;
      return line;
    }
    if (buffer_.size() - offset_ > kMaxLineBytes) {
      return Fail(absl::DataLossError("the IMAP server sent a line longer than 1 MiB"));
    }
    RETURN_IF_ERROR(Fill());
  }
}

absl::StatusOr<ImapResponse> ImapSession::ReadResponse(
    const std::function<absl::Status(absl::string_view)>* literal_sink, size_t chunk_size,
    const std::function<absl::Status(uint64_t, absl::string_view)>* literal_start) {
  std::string raw;
  while (true) {
    ASSIGN_OR_RETURN(std::string line, ReadLine());
    raw += line;
    // A line that ends in {n} announces a literal of n bytes.
    if (line.size() < 5 || line[line.size() - 3] != '}') break;
    const size_t open = line.rfind('{');
    uint64_t n = 0;
    if (open == std::string::npos || !absl::SimpleAtoi(line.substr(open + 1, line.size() - 3 - open - 1), &n)) break;
    if (literal_sink != nullptr && *literal_sink && literal_start != nullptr && *literal_start) {
      // The response so far, without the literal's "{n}\r\n".
      absl::Status started = (*literal_start)(n, absl::string_view(raw).substr(0, raw.size() - (line.size() - open)));
      if (!started.ok()) {
        usable_ = false;
        return started;
      }
    }
    if (literal_sink != nullptr && *literal_sink && n > chunk_size) {
      // Streamed: handed on in chunks, kept as an empty literal.
      raw.resize(raw.size() - (line.size() - open));
      raw += "{0}\r\n";
      // TLS delivers at most 16 KiB at a time: gather whole chunks.
      std::string chunk;
      chunk.reserve(chunk_size);
      uint64_t left = n;
      while (left > 0) {
        if (offset_ == buffer_.size()) RETURN_IF_ERROR(Fill());
        const size_t take =
            static_cast<size_t>(std::min<uint64_t>({left, buffer_.size() - offset_, chunk_size - chunk.size()}));
        chunk.append(buffer_, offset_, take);
        offset_ += take;
        left -= take;
        if (chunk.size() == chunk_size || left == 0) {
          absl::Status sunk = (*literal_sink)(chunk);
          chunk.clear();
          if (!sunk.ok()) {
            usable_ = false;  // the rest of the literal is still on the wire
            return sunk;
          }
        }
      }
      continue;
    }
    if (n > kMaxKeptLiteral) return Fail(absl::DataLossError("the IMAP server sent a literal over 64 MiB"));
    while (buffer_.size() - offset_ < n) RETURN_IF_ERROR(Fill());
    if (literal_sink != nullptr && *literal_sink) {
      // Small enough to hand on in one chunk.
      RETURN_IF_ERROR((*literal_sink)(absl::string_view(buffer_).substr(offset_, n)));
      raw.resize(raw.size() - (line.size() - open));
      raw += "{0}\r\n";
    } else {
      raw.append(buffer_, offset_, n);
    }
    offset_ += n;
  }
  absl::StatusOr<ImapResponse> parsed = ParseImapResponse(raw);
  if (!parsed.ok()) return Fail(absl::DataLossError(parsed.status().message()));
  if (parsed->status == "BYE" && parsed->type == ImapResponse::Type::kUntagged) usable_ = false;
  return parsed;
}

absl::StatusOr<ImapSession::Reply> ImapSession::Run(
    const std::vector<std::string>& parts, const std::function<absl::Status(absl::string_view)>* literal_sink,
    size_t chunk_size, const std::function<absl::Status(uint64_t, absl::string_view)>* literal_start) {
  if (!usable_) return absl::UnavailableError("the IMAP connection is no longer usable");
  const std::string tag = absl::StrCat("t", next_tag_++);
  Reply reply;
  std::string text = absl::StrCat(tag, " ", parts[0]);
  for (size_t i = 1; i < parts.size(); i += 2) {
    // Synchronizing literal: announce, wait for "+", send the data.
    RETURN_IF_ERROR(Fail(transport_->Write(absl::StrCat(text, "{", parts[i].size(), "}\r\n"))));
    while (true) {
      ASSIGN_OR_RETURN(ImapResponse r, ReadResponse());
      if (r.type == ImapResponse::Type::kContinuation) break;
      if (r.type == ImapResponse::Type::kTagged) {
        reply.tagged = std::move(r);
        return reply;  // refused before the literal
      }
      Observe(r);
      reply.untagged.push_back(std::move(r));
    }
    RETURN_IF_ERROR(Fail(transport_->Write(parts[i])));
    text = i + 1 < parts.size() ? parts[i + 1] : "";
  }
  RETURN_IF_ERROR(Fail(transport_->Write(absl::StrCat(text, "\r\n"))));
  while (true) {
    ASSIGN_OR_RETURN(ImapResponse r, ReadResponse(literal_sink, chunk_size, literal_start));
    if (r.type == ImapResponse::Type::kTagged && r.tag == tag) {
      reply.tagged = std::move(r);
      return reply;
    }
    if (r.type == ImapResponse::Type::kContinuation) {
      return Fail(absl::DataLossError("the IMAP server asked for a continuation nobody announced"));
    }
    Observe(r);
    reply.untagged.push_back(std::move(r));
  }
}

void ImapSession::Observe(const ImapResponse& r) {
  if (on_unsolicited_ && (r.name == "EXISTS" || r.name == "EXPUNGE")) on_unsolicited_(r);
}

absl::StatusOr<ImapSession::IdleEnd> ImapSession::Idle(absl::Duration max_wait, int wake_fd,
                                                       const std::function<bool(const ImapResponse&)>& on_update) {
  if (!usable_) return absl::UnavailableError("the IMAP connection is no longer usable");
  if (capabilities_.count("IDLE") == 0) return absl::FailedPreconditionError("the IMAP server does not offer IDLE");
  const std::string tag = absl::StrCat("t", next_tag_++);
  RETURN_IF_ERROR(Fail(transport_->Write(absl::StrCat(tag, " IDLE\r\n"))));
  bool done = false;
  auto untagged = [&](const ImapResponse& r) -> absl::Status {
    if (r.status == "BYE") return Fail(absl::UnavailableError(absl::StrCat("the IMAP server said BYE: ", r.text)));
    if (on_update(r)) done = true;
    return absl::OkStatus();
  };
  while (true) {
    ASSIGN_OR_RETURN(ImapResponse r, ReadResponse());
    if (r.type == ImapResponse::Type::kContinuation) break;
    if (r.type == ImapResponse::Type::kTagged) return ImapCommandFailure(r, "IDLE");
    RETURN_IF_ERROR(untagged(r));
  }
  const absl::Time deadline = absl::Now() + max_wait;
  IdleEnd end = IdleEnd::kAsked;
  while (!done) {
    // What is buffered already needs no wait (a whole response, or the
    // start of one whose rest is on its way).
    if (offset_ == buffer_.size()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        end = IdleEnd::kTimedOut;
        break;
      }
      absl::StatusOr<ImapTransport::Wait> wait = transport_->WaitReadable(left, wake_fd);
      if (!wait.ok()) return Fail(wait.status());
      if (*wait != ImapTransport::Wait::kReadable) {
        end = *wait == ImapTransport::Wait::kWoken ? IdleEnd::kWoken : IdleEnd::kTimedOut;
        break;
      }
    }
    ASSIGN_OR_RETURN(ImapResponse r, ReadResponse());
    if (r.type == ImapResponse::Type::kTagged) {
      // The server ended the IDLE itself.
      if (r.tag == tag && r.status == "OK") return IdleEnd::kByServer;
      return Fail(ImapCommandFailure(r, "IDLE"));
    }
    if (r.type == ImapResponse::Type::kContinuation) {
      return Fail(absl::DataLossError("the IMAP server asked for a continuation nobody announced"));
    }
    RETURN_IF_ERROR(untagged(r));
  }
  RETURN_IF_ERROR(Fail(transport_->Write("DONE\r\n")));
  while (true) {
    ASSIGN_OR_RETURN(ImapResponse r, ReadResponse());
    if (r.type == ImapResponse::Type::kTagged && r.tag == tag) {
      if (r.status != "OK") return ImapCommandFailure(r, "IDLE");
      return end;
    }
    if (r.type == ImapResponse::Type::kContinuation) {
      return Fail(absl::DataLossError("the IMAP server asked for a continuation nobody announced"));
    }
    RETURN_IF_ERROR(untagged(r));
  }
}

absl::StatusOr<std::string> ImapSession::MailboxArg(absl::string_view folder_utf8) {
  if (folder_utf8.empty()) return absl::InvalidArgumentError("folder: required");
  RETURN_IF_ERROR(ValidateImapString("folder", folder_utf8, kMaxStringArgument));
  ASSIGN_OR_RETURN(std::string encoded, EncodeMailboxName(folder_utf8));
  return Quote(encoded);
}

absl::Status ImapSession::Authenticate(absl::string_view user, const Secret& token, SaslMechanism mechanism) {
  RETURN_IF_ERROR(ValidateImapString("mailbox", user, 320));
  const bool xoauth2 = mechanism == SaslMechanism::kXoauth2;
  const std::string name = xoauth2 ? "XOAUTH2" : "OAUTHBEARER";
  if (capabilities_.count("AUTH=" + name) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("the IMAP server does not offer AUTH=", name));
  }
  const Secret initial_response =
      xoauth2 ? SaslXoauth2(user, token) : SaslOauthbearer(user, server_.host, server_.port, token);
  const std::string tag = absl::StrCat("t", next_tag_++);
  std::string command;
  if (capabilities_.count("SASL-IR")) {
    command = absl::StrCat(tag, " AUTHENTICATE ", name, " ", initial_response.Reveal(), "\r\n");
  } else {
    command = absl::StrCat(tag, " AUTHENTICATE ", name, "\r\n");
  }
  absl::Status sent = Fail(transport_->Write(command));
  WipeString(command);
  if (!sent.ok()) return sent;
  ImapResponse done;
  bool initial_sent = capabilities_.count("SASL-IR") > 0;
  while (true) {
    absl::StatusOr<ImapResponse> r = ReadResponse();
    if (!r.ok()) {
      return r.status();
    }
    if (r->type == ImapResponse::Type::kContinuation) {
      if (!initial_sent) {
        initial_sent = true;
        // Held as a Secret: wiped however this returns.
        const Secret line(absl::StrCat(initial_response.Reveal(), "\r\n"));
        RETURN_IF_ERROR(Fail(transport_->Write(line.Reveal())));
        continue;
      }
      // A failure challenge (JSON error): answer as the mechanism says, then
      // read the tagged NO.
      RETURN_IF_ERROR(Fail(transport_->Write(xoauth2 ? "\r\n" : "AQ==\r\n")));
      continue;
    }
    if (r->type == ImapResponse::Type::kTagged && r->tag == tag) {
      done = *std::move(r);
      break;
    }
  }
  if (done.status != "OK") {
    absl::Status failure = ImapCommandFailure(done, "AUTHENTICATE");
    if (done.status == "NO" && done.code.empty()) {
      // Exchange answers "NO AUTHENTICATE failed." without a code.
      return absl::UnauthenticatedError(failure.message());
    }
    return failure;
  }
  if (done.code == "CAPABILITY") {
    capabilities_.clear();
    for (const ImapValue& v : done.code_args) capabilities_.insert(Upper(v.text));
  }
  // A harmless command proves the session is usable: Exchange can accept
  // AUTHENTICATE and refuse everything after it.
  ASSIGN_OR_RETURN(Reply confirm, Run({"LIST \"\" \"\""}));
  if (confirm.tagged.status != "OK") return ImapCommandFailure(confirm.tagged, "the first command after login");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ImapFolder>> ImapSession::ListFolders() {
  const bool special_use = capabilities_.count("SPECIAL-USE") > 0 && capabilities_.count("LIST-EXTENDED") > 0;
  ASSIGN_OR_RETURN(Reply reply, Run({special_use ? "LIST \"\" \"*\" RETURN (SPECIAL-USE)" : "LIST \"\" \"*\""}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "LIST");
  std::vector<ImapFolder> folders;
  for (const ImapResponse& r : reply.untagged) {
    if (r.name != "LIST" || r.values.size() < 3 || r.values[0].kind != ImapValue::Kind::kList) continue;
    ImapFolder f;
    for (const ImapValue& a : r.values[0].list) f.attributes.push_back(a.text);
    f.delimiter = r.values[1].Str();
    f.name = DecodeMailboxName(r.values[2].Str());
    folders.push_back(std::move(f));
  }
  std::sort(folders.begin(), folders.end(), [](const ImapFolder& a, const ImapFolder& b) { return a.name < b.name; });
  return folders;
}

absl::StatusOr<ImapFolderStatus> ImapSession::Status(absl::string_view folder) {
  ASSIGN_OR_RETURN(std::string mailbox, MailboxArg(folder));
  ASSIGN_OR_RETURN(Reply reply, Run({absl::StrCat("STATUS ", mailbox, " (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "STATUS");
  ImapFolderStatus status;
  for (const ImapResponse& r : reply.untagged) {
    if (r.name != "STATUS" || r.values.size() < 2 || r.values[1].kind != ImapValue::Kind::kList) continue;
    const auto& items = r.values[1].list;
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      const uint64_t n = items[i + 1].Number().value_or(0);
      const std::string key = Upper(items[i].text);
      if (key == "MESSAGES") status.messages = n;
      if (key == "UNSEEN") status.unseen = n;
      if (key == "UIDNEXT") status.uid_next = n;
      if (key == "UIDVALIDITY") status.uid_validity = n;
    }
  }
  return status;
}

absl::StatusOr<ImapSelected> ImapSession::Examine(absl::string_view folder) {
  ASSIGN_OR_RETURN(std::string mailbox, MailboxArg(folder));
  selected_.reset();
  ASSIGN_OR_RETURN(Reply reply, Run({absl::StrCat("EXAMINE ", mailbox)}));
  if (reply.tagged.status != "OK") {
    absl::Status failure = ImapCommandFailure(reply.tagged, "EXAMINE");
    if (absl::IsFailedPrecondition(failure) && reply.tagged.status == "NO") {
      return absl::NotFoundError(absl::StrCat("folder \"", folder, "\" does not exist (", failure.message(), ")"));
    }
    return failure;
  }
  ImapSelected selected;
  selected.folder = std::string(folder);
  for (const ImapResponse& r : reply.untagged) {
    if (r.name == "EXISTS" && r.number.has_value()) selected.exists = *r.number;
    if (r.code == "UIDVALIDITY" && !r.code_args.empty()) selected.uid_validity = r.code_args[0].Number().value_or(0);
    if (r.code == "UIDNEXT" && !r.code_args.empty()) selected.uid_next = r.code_args[0].Number().value_or(0);
  }
  selected_ = selected;
  return selected;
}

absl::StatusOr<std::vector<uint32_t>> ImapSession::UidSearch(const ImapSearchBuilder& criteria) {
  if (!selected_.has_value()) return absl::FailedPreconditionError("no folder is selected");
  std::vector<std::string> parts = criteria.Build();
  parts[0] = absl::StrCat("UID SEARCH ", parts[0]);
  ASSIGN_OR_RETURN(Reply reply, Run(parts));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "SEARCH");
  std::vector<uint32_t> uids;
  for (const ImapResponse& r : reply.untagged) {
    if (r.name != "SEARCH") continue;
    for (const ImapValue& v : r.values) {
      if (auto n = v.Number(); n.has_value() && *n <= UINT32_MAX) uids.push_back(static_cast<uint32_t>(*n));
    }
  }
  std::sort(uids.begin(), uids.end());
  return uids;
}

absl::StatusOr<std::vector<ImapMessageSummary>> ImapSession::FetchSummaries(const std::vector<uint32_t>& uids) {
  std::vector<ImapMessageSummary> out;
  if (uids.empty()) return out;
  std::vector<std::string> set;
  for (uint32_t uid : uids) set.push_back(std::to_string(uid));
  ASSIGN_OR_RETURN(Reply reply, Run({absl::StrCat("UID FETCH ", absl::StrJoin(set, ","),
                                                  " (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "FETCH");
  for (const ImapResponse& r : reply.untagged) {
    ImapMessageSummary m = SummaryOf(r);
    if (m.uid != 0) out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.uid < b.uid; });
  return out;
}

namespace {

// "1:4,7,9:12" for a sorted, de-duplicated copy of `uids`.
std::string UidSet(std::vector<uint32_t> uids) {
  std::sort(uids.begin(), uids.end());
  uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
  std::string set;
  for (size_t i = 0; i < uids.size();) {
    size_t j = i;
    while (j + 1 < uids.size() && uids[j + 1] == uids[j] + 1) ++j;
    if (!set.empty()) set += ",";
    absl::StrAppend(&set, uids[i]);
    if (j > i) absl::StrAppend(&set, ":", uids[j]);
    i = j + 1;
  }
  return set;
}

}  // namespace

absl::StatusOr<uint64_t> ImapSession::FetchSection(uint32_t uid, absl::string_view section, size_t chunk_size,
                                                   const std::function<absl::Status(absl::string_view)>& sink,
                                                   const FetchStart& start) {
  uint64_t total = 0;
  const std::function<absl::Status(absl::string_view)> counting = [&](absl::string_view chunk) {
    total += chunk.size();
    return sink(chunk);
  };
  FetchStart with_uid = nullptr;
  if (start) {
    with_uid = [&](const ImapMessageSummary& message, uint64_t size) {
      if (message.uid != 0) return start(message, size);
      ImapMessageSummary m = message;
      m.uid = uid;
      return start(m, size);
    };
  }
  ASSIGN_OR_RETURN(uint64_t messages, FetchSections({uid}, section, chunk_size, counting, with_uid));
  if (messages == 0) {
    return absl::NotFoundError(absl::StrCat("no message with UID ", uid, " in \"", selected_->folder, "\""));
  }
  return total;
}

absl::StatusOr<uint64_t> ImapSession::FetchSections(const std::vector<uint32_t>& uids, absl::string_view section,
                                                    size_t chunk_size,
                                                    const std::function<absl::Status(absl::string_view)>& sink,
                                                    const FetchStart& start) {
  RETURN_IF_ERROR(ValidateImapSection(section));
  if (!selected_.has_value()) return absl::FailedPreconditionError("no folder is selected");
  if (uids.empty() || uids.size() > kMaxUidsPerFetch) {
    return absl::InvalidArgumentError(absl::StrCat("uids: between 1 and ", kMaxUidsPerFetch));
  }
  for (uint32_t uid : uids) {
    if (uid == 0) return absl::InvalidArgumentError("uids: 0 is not a UID");
  }
  uint64_t messages = 0;
  const std::function<absl::Status(uint64_t, absl::string_view)> on_literal =
      [&](uint64_t size, absl::string_view prefix) -> absl::Status {
    ++messages;
    if (!start) return absl::OkStatus();
    // The attributes before the body (asked for first, and sent first): parse
    // them by closing the response where the body begins.
    ImapMessageSummary m;
    const size_t body = prefix.rfind(" BODY[");
    if (body != absl::string_view::npos) {
      absl::StatusOr<ImapResponse> head = ParseImapResponse(absl::StrCat(prefix.substr(0, body), ")\r\n"));
      if (head.ok()) m = SummaryOf(*head);
    }
    return start(m, size);
  };
  ASSIGN_OR_RETURN(Reply reply, Run({absl::StrCat("UID FETCH ", UidSet(uids), " (UID FLAGS INTERNALDATE BODY.PEEK[",
                                                  section, "])")},
                                    &sink, chunk_size, &on_literal));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "FETCH");
  // Bodies sent as quoted strings (small) instead of literals: servers send
  // either kind for a whole reply (a streamed literal stays in the parsed
  // response too, so only look when nothing was streamed).
  if (messages == 0) {
    for (const ImapResponse& r : reply.untagged) {
      for (const auto& [name, value] : FetchAttributes(r)) {
        if (absl::StartsWith(name, "BODY[") && value->kind == ImapValue::Kind::kString) {
          ++messages;
          if (start) RETURN_IF_ERROR(start(SummaryOf(r), value->text.size()));
          RETURN_IF_ERROR(sink(value->text));
        }
      }
    }
  }
  return messages;
}

absl::StatusOr<ImapSelected> ImapSession::Select(absl::string_view folder) {
  if (selected_.has_value() && selected_->folder == folder) return *selected_;
  return Examine(folder);
}

absl::StatusOr<ImapMessageSummary> ImapSession::FetchSummary(uint32_t uid) {
  if (!selected_.has_value()) return absl::FailedPreconditionError("no folder is selected");
  ASSIGN_OR_RETURN(Reply reply, Run({absl::StrCat("UID FETCH ", uid, " (UID FLAGS RFC822.SIZE INTERNALDATE)")}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "FETCH");
  for (const ImapResponse& r : reply.untagged) {
    ImapMessageSummary m = SummaryOf(r);
    if (m.uid == uid) return m;
  }
  return absl::NotFoundError(absl::StrCat("no message with UID ", uid, " in \"", selected_->folder, "\""));
}

absl::Status ImapSession::Noop() {
  ASSIGN_OR_RETURN(Reply reply, Run({"NOOP"}));
  if (reply.tagged.status != "OK") return ImapCommandFailure(reply.tagged, "NOOP");
  return absl::OkStatus();
}

absl::Status ImapSession::Logout() {
  absl::StatusOr<Reply> reply = Run({"LOGOUT"});
  usable_ = false;
  return reply.status();
}

void ImapSearchBuilder::Append(absl::string_view key) {
  // A space before every key except the very first; text after a literal
  // always starts with one.
  std::string& text = parts_.back();
  if (!(parts_.size() == 1 && text.empty())) text += ' ';
  absl::StrAppend(&text, key);
}

ImapSearchBuilder& ImapSearchBuilder::Since(absl::Time t) {
  Append(absl::StrCat("SINCE ", ImapDate(t)));
  return *this;
}

ImapSearchBuilder& ImapSearchBuilder::Before(absl::Time t) {
  Append(absl::StrCat("BEFORE ", ImapDate(t)));
  return *this;
}

ImapSearchBuilder& ImapSearchBuilder::Unseen() {
  Append("UNSEEN");
  return *this;
}

ImapSearchBuilder& ImapSearchBuilder::UidRange(uint32_t first, uint32_t last) {
  Append(absl::StrCat("UID ", first, ":", last == 0 ? std::string("*") : std::to_string(last)));
  return *this;
}

absl::Status ImapSearchBuilder::Text(absl::string_view key, absl::string_view field, absl::string_view value) {
  RETURN_IF_ERROR(ValidateImapString(field, value, kMaxStringArgument));
  if (NeedsLiteral(value)) {
    utf8_ = true;
    Append(absl::StrCat(key, " "));
    parts_.push_back(std::string(value));
    parts_.push_back("");
  } else {
    Append(absl::StrCat(key, " ", Quote(value)));
  }
  return absl::OkStatus();
}

absl::Status ImapSearchBuilder::From(absl::string_view s) { return Text("FROM", "from", s); }
absl::Status ImapSearchBuilder::To(absl::string_view s) { return Text("TO", "to", s); }
absl::Status ImapSearchBuilder::Subject(absl::string_view s) { return Text("SUBJECT", "subject", s); }

absl::Status ImapSearchBuilder::Header(absl::string_view name, absl::string_view value) {
  if (name.empty() || name.size() > 100 ||
      !std::all_of(name.begin(), name.end(), [](char c) { return absl::ascii_isalnum(c) || c == '-'; })) {
    return absl::InvalidArgumentError("header.name: letters, digits and '-' only (1-100)");
  }
  return Text(absl::StrCat("HEADER ", name), "header.value", value);
}

std::vector<std::string> ImapSearchBuilder::Build() const {
  std::vector<std::string> parts = parts_;
  if (parts.size() == 1 && parts[0].empty()) parts[0] = "ALL";
  if (utf8_) parts[0] = "CHARSET UTF-8 " + parts[0];
  return parts;
}

}  // namespace tokenbroker
