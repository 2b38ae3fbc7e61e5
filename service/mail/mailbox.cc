#include "service/mail/mailbox.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/status_macros.h"

namespace tokenbroker {
namespace {

std::vector<MailAddress> Addresses(const std::vector<ImapAddress>& in) {
  std::vector<MailAddress> out;
  out.reserve(in.size());
  for (const ImapAddress& a : in) out.push_back({a.name, a.address});
  return out;
}

MailSummary ToSummary(ImapMessageSummary m) {
  MailSummary out;
  out.uid = m.uid;
  out.flags = std::move(m.flags);
  out.size = m.size;
  out.internal_date = ParseImapDateTime(m.internal_date);
  out.subject = std::move(m.envelope.subject);
  out.from = Addresses(m.envelope.from);
  out.to = Addresses(m.envelope.to);
  out.cc = Addresses(m.envelope.cc);
  out.date = ParseMailDate(m.envelope.date);
  out.message_id = std::move(m.envelope.message_id);
  out.in_reply_to = std::move(m.envelope.in_reply_to);
  return out;
}

absl::StatusOr<ImapSearchBuilder> BuildCriteria(const MailQuery& q) {
  ImapSearchBuilder b;
  if (q.since) b.Since(*q.since);
  if (q.before) b.Before(*q.before);
  if (!q.from.empty()) RETURN_IF_ERROR(b.From(q.from));
  if (!q.to.empty()) RETURN_IF_ERROR(b.To(q.to));
  if (!q.subject.empty()) RETURN_IF_ERROR(b.Subject(q.subject));
  if (q.unseen_only) b.Unseen();
  if (q.uid_min > 0 || q.uid_max > 0) {
    if (q.uid_max > 0 && q.uid_max < q.uid_min) {
      return absl::InvalidArgumentError("criteria.uid_max: smaller than uid_min");
    }
    b.UidRange(std::max<uint32_t>(1, q.uid_min), q.uid_max);
  }
  if (!q.header_name.empty() || !q.header_value.empty()) RETURN_IF_ERROR(b.Header(q.header_name, q.header_value));
  return b;
}

// The query's criteria, or INVALID_ARGUMENT naming the field.
absl::StatusOr<ImapSearchBuilder> BuildQuery(const MailQuery& query) {
  if (query.limit > Mailbox::kMaxSearchLimit) {
    return absl::InvalidArgumentError(absl::StrCat("limit: at most ", Mailbox::kMaxSearchLimit));
  }
  return BuildCriteria(query);
}

}  // namespace

absl::Status ValidateQuery(const MailQuery& query) { return BuildQuery(query).status(); }

std::string SpecialUse(const std::vector<std::string>& attributes) {
  for (const std::string& a : attributes) {
    const std::string lower = absl::AsciiStrToLower(a);
    for (const char* use : {"\\sent", "\\trash", "\\drafts", "\\junk", "\\archive", "\\all", "\\flagged"}) {
      if (lower == use) return a;
    }
  }
  return "";
}

// Hand-parsed: it is read for every fetched message.
std::optional<absl::Time> ParseImapDateTime(absl::string_view s) {
  s = absl::StripLeadingAsciiWhitespace(s);
  auto number = [&s](size_t digits, int* out) {
    if (s.size() < digits) return false;
    int v = 0;
    for (size_t i = 0; i < digits; ++i) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) return false;
      v = v * 10 + (s[i] - '0');
    }
    *out = v;
    s.remove_prefix(digits);
    return true;
  };
  auto literal = [&s](char c) {
    if (s.empty() || s[0] != c) return false;
    s.remove_prefix(1);
    return true;
  };
  static constexpr absl::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
  int day = 0, month = 0, year = 0, hour = 0, minute = 0, second = 0, offset = 0;
  const size_t day_digits = s.size() > 1 && s[1] == '-' ? 1 : 2;
  if (!number(day_digits, &day) || !literal('-') || s.size() < 3) return std::nullopt;
  const std::string name = absl::AsciiStrToLower(s.substr(0, 3));
  for (int m = 0; m < 12; ++m) {
    if (kMonths[m] == name) month = m + 1;
  }
  s.remove_prefix(3);
  if (month == 0 || !literal('-') || !number(4, &year) || !literal(' ') || !number(2, &hour) || !literal(':') ||
      !number(2, &minute) || !literal(':') || !number(2, &second) || !literal(' ') || s.empty()) {
    return std::nullopt;
  }
  const int sign = s[0] == '-' ? -1 : 1;
  if (s[0] != '+' && s[0] != '-') return std::nullopt;
  s.remove_prefix(1);
  if (!number(4, &offset) || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  const absl::Time local =
      absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, second), absl::UTCTimeZone());
  return local - sign * (absl::Hours(offset / 100) + absl::Minutes(offset % 100));
}

std::optional<absl::Time> ParseMailDate(absl::string_view s) {
  std::string text(absl::StripAsciiWhitespace(s));
  if (const size_t comment = text.find(" ("); comment != std::string::npos) text.resize(comment);  // "(UTC)"
  absl::Time t;
  std::string err;
  for (const char* format : {"%a, %d %b %Y %H:%M:%S %z", "%d %b %Y %H:%M:%S %z", "%a, %d %b %Y %H:%M %z"}) {
    if (absl::ParseTime(format, text, &t, &err)) return t;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<MailFolder>> Mailbox::Folders() {
  ASSIGN_OR_RETURN(std::vector<ImapFolder> folders, session_.ListFolders());
  std::vector<MailFolder> out;
  out.reserve(folders.size());
  for (ImapFolder& f : folders) {
    std::string special_use = SpecialUse(f.attributes);
    out.push_back({std::move(f.name), std::move(f.delimiter), std::move(f.attributes), std::move(special_use)});
  }
  return out;
}

absl::StatusOr<MailFolderStatus> Mailbox::Status(absl::string_view folder) {
  absl::StatusOr<ImapFolderStatus> status = session_.Status(folder);
  if (absl::IsFailedPrecondition(status.status()) || absl::IsNotFound(status.status())) {
    return absl::NotFoundError(absl::StrCat("folder \"", folder, "\": ", status.status().message()));
  }
  if (!status.ok()) return status.status();
  return MailFolderStatus{std::string(folder), static_cast<uint32_t>(status->messages),
                          static_cast<uint32_t>(status->unseen), static_cast<uint32_t>(status->uid_next),
                          static_cast<uint32_t>(status->uid_validity)};
}

absl::StatusOr<MailSearchResult> Mailbox::Search(absl::string_view folder, const MailQuery& query) {
  ASSIGN_OR_RETURN(ImapSearchBuilder criteria, BuildQuery(query));
  ASSIGN_OR_RETURN(ImapSelected selected, session_.Select(folder));
  ASSIGN_OR_RETURN(std::vector<uint32_t> uids, session_.UidSearch(criteria));
  MailSearchResult result;
  result.total_matches = static_cast<uint32_t>(uids.size());
  result.uid_validity = static_cast<uint32_t>(selected.uid_validity);
  // Servers answer in ascending UID order, but need not: sort, so that the
  // limit keeps the newest (or oldest) whatever the server did.
  std::sort(uids.begin(), uids.end());
  const size_t limit = query.limit == 0 ? kDefaultSearchLimit : query.limit;
  if (!query.oldest_first) std::reverse(uids.begin(), uids.end());
  if (uids.size() > limit) uids.resize(limit);
  if (uids.empty()) return result;
  ASSIGN_OR_RETURN(std::vector<ImapMessageSummary> summaries, session_.FetchSummaries(uids));
  result.messages.reserve(summaries.size());
  for (ImapMessageSummary& m : summaries) result.messages.push_back(ToSummary(std::move(m)));
  // FETCH answers in the server's order: put them in the order asked for.
  std::sort(result.messages.begin(), result.messages.end(),
            [oldest_first = query.oldest_first](const MailSummary& a, const MailSummary& b) {
              return oldest_first ? a.uid < b.uid : a.uid > b.uid;
            });
  return result;
}

absl::StatusOr<std::vector<MailSummary>> Mailbox::Summaries(const std::vector<uint32_t>& uids) {
  std::vector<MailSummary> out;
  if (uids.empty()) return out;
  ASSIGN_OR_RETURN(std::vector<ImapMessageSummary> summaries, session_.FetchSummaries(uids));
  out.reserve(summaries.size());
  std::vector<uint32_t> asked = uids;
  std::sort(asked.begin(), asked.end());
  for (ImapMessageSummary& m : summaries) {
    // A server may slip in a flag change of another message.
    if (std::binary_search(asked.begin(), asked.end(), m.uid)) out.push_back(ToSummary(std::move(m)));
  }
  std::sort(out.begin(), out.end(), [](const MailSummary& a, const MailSummary& b) { return a.uid < b.uid; });
  return out;
}

absl::StatusOr<ImapSelected> Mailbox::Open(absl::string_view folder, uint32_t uid_validity) {
  ASSIGN_OR_RETURN(ImapSelected selected, session_.Select(folder));
  if (uid_validity != 0 && uid_validity != selected.uid_validity) {
    return absl::FailedPreconditionError(absl::StrCat("folder \"", folder, "\" has UIDVALIDITY ", selected.uid_validity,
                                                      ", not ", uid_validity,
                                                      ": the UIDs you hold name other messages now; search again"));
  }
  return selected;
}

namespace {

ImapSession::FetchStart StartAdapter(const ImapSelected& selected, const Mailbox::OnStart& on_start) {
  return [&selected, &on_start](const ImapMessageSummary& message, uint64_t size) -> absl::Status {
    MailFetchStart start;
    start.uid = message.uid;
    start.uid_validity = static_cast<uint32_t>(selected.uid_validity);
    start.size = size;
    start.flags = message.flags;  // a view: no copy per message
    start.internal_date = ParseImapDateTime(message.internal_date);
    return on_start(start);
  };
}

}  // namespace

absl::Status Mailbox::Fetch(absl::string_view folder, uint32_t uid_validity, uint32_t uid, absl::string_view section,
                            size_t chunk_size, const OnStart& on_start, const Sink& sink) {
  ASSIGN_OR_RETURN(ImapSelected selected, Open(folder, uid_validity));
  return session_.FetchSection(uid, section, chunk_size, sink, StartAdapter(selected, on_start)).status();
}

absl::StatusOr<uint64_t> Mailbox::FetchMany(absl::string_view folder, uint32_t uid_validity,
                                            const std::vector<uint32_t>& uids, absl::string_view section,
                                            size_t chunk_size, const OnStart& on_start, const Sink& sink) {
  ASSIGN_OR_RETURN(ImapSelected selected, Open(folder, uid_validity));
  return session_.FetchSections(uids, section, chunk_size, sink, StartAdapter(selected, on_start));
}

}  // namespace tokenbroker
