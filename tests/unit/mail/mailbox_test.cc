// Mailbox (the mail behaviour behind MailService) over an in-memory IMAP
// server, without gRPC: special use, search order and limits, parsed times,
// the UIDVALIDITY check before a fetch, and a missing folder named.
#include "service/mail/mailbox.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/in_memory_imap_transport.h"

namespace tokenbroker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct ModelMessage {
  uint32_t uid = 0;
  bool seen = false;
  std::string internal_date;  // INTERNALDATE as a server sends it
  std::string date_header;
  std::string subject;
  std::string body;
};

struct ModelFolder {
  std::string attributes;  // as in a LIST response, e.g. "\\HasNoChildren \\Sent"
  uint32_t uid_validity = 1;
  std::vector<ModelMessage> messages;
};

// An IMAP server over a map of folders. UID SEARCH answers in a scrambled
// order and FETCH in descending order (both allowed by RFC 3501), so the
// tests see that Mailbox imposes its own order.
class ModelServer final : public testing::InMemoryImapTransport {
 public:
  ModelServer(std::map<std::string, ModelFolder>& folders, std::vector<std::string>& commands)
      : InMemoryImapTransport("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 SPECIAL-USE] model\r\n"),
        folders_(folders),
        commands_(commands) {}
  absl::Status Write(absl::string_view data) override {
    const std::string line(data.substr(0, data.find("\r\n")));
    const size_t space = line.find(' ');
    const std::string tag = line.substr(0, space);
    const std::string command = line.substr(space + 1);
    commands_.push_back(command);
    if (absl::StartsWith(command, "LIST")) {
      for (const auto& [name, folder] : folders_) {
        absl::StrAppend(&pending_, "* LIST (", folder.attributes, ") \"/\" \"", name, "\"\r\n");
      }
    } else if (absl::StartsWith(command, "STATUS ") || absl::StartsWith(command, "EXAMINE ")) {
      const std::string name = Quoted(command);
      auto it = folders_.find(name);
      if (it == folders_.end()) {
        absl::StrAppend(&pending_, tag, " NO [NONEXISTENT] Mailbox doesn't exist: ", name, "\r\n");
        return absl::OkStatus();
      }
      const ModelFolder& f = it->second;
      const uint32_t next = f.messages.empty() ? 1 : f.messages.back().uid + 1;
      if (absl::StartsWith(command, "STATUS ")) {
        size_t unseen = 0;
        for (const ModelMessage& m : f.messages) unseen += m.seen ? 0 : 1;
        absl::StrAppend(&pending_, "* STATUS \"", name, "\" (MESSAGES ", f.messages.size(), " UNSEEN ", unseen,
                        " UIDNEXT ", next, " UIDVALIDITY ", f.uid_validity, ")\r\n");
      } else {
        selected_ = name;
        absl::StrAppend(&pending_, "* ", f.messages.size(), " EXISTS\r\n* OK [UIDVALIDITY ", f.uid_validity,
                        "] UIDs valid\r\n* OK [UIDNEXT ", next, "] next\r\n");
        absl::StrAppend(&pending_, tag, " OK [READ-ONLY] Examine completed\r\n");
        return absl::OkStatus();
      }
    } else if (absl::StartsWith(command, "UID SEARCH")) {
      std::vector<uint32_t> uids;
      for (const ModelMessage& m : Selected().messages) {
        if (!absl::StrContains(command, "UNSEEN") || !m.seen) uids.push_back(m.uid);
      }
      if (uids.size() > 2) std::swap(uids.front(), uids[uids.size() / 2]);
      absl::StrAppend(&pending_, "* SEARCH ", absl::StrJoin(uids, " "), "\r\n");
    } else if (absl::StartsWith(command, "UID FETCH ")) {
      std::vector<std::string> set = absl::StrSplit(command.substr(10, command.find(' ', 10) - 10), ',');
      std::reverse(set.begin(), set.end());
      for (const std::string& one : set) {
        uint32_t uid = 0;
        if (!absl::SimpleAtoi(one, &uid)) return absl::InvalidArgumentError("the model takes UID lists only");
        const ModelMessage* m = Find(uid);
        if (m == nullptr) continue;
        absl::StrAppend(&pending_, "* ", uid, " FETCH (UID ", uid, " FLAGS (", m->seen ? "\\Seen" : "",
                        ") INTERNALDATE \"", m->internal_date, "\"");
        if (absl::StrContains(command, "ENVELOPE")) {
          absl::StrAppend(&pending_, " RFC822.SIZE ", m->body.size(), " ENVELOPE (\"", m->date_header, "\" \"",
                          m->subject, "\" ((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<m", uid,
                          "@example.org>\"))\r\n");
        } else {
          absl::StrAppend(&pending_, " BODY[] {", m->body.size(), "}\r\n", m->body, ")\r\n");
        }
      }
    }
    absl::StrAppend(&pending_, tag, " OK done\r\n");
    return absl::OkStatus();
  }

 private:
  static std::string Quoted(const std::string& command) {
    const size_t open = command.find('"');
    return command.substr(open + 1, command.find('"', open + 1) - open - 1);
  }
  ModelFolder& Selected() { return folders_.at(selected_); }
  const ModelMessage* Find(uint32_t uid) {
    for (const ModelMessage& m : Selected().messages) {
      if (m.uid == uid) return &m;
    }
    return nullptr;
  }

  std::map<std::string, ModelFolder>& folders_;
  std::vector<std::string>& commands_;
  std::string selected_;
};

class MailboxTest : public ::testing::Test {
 protected:
  MailboxTest() {
    folders_["INBOX"].attributes = "\\HasNoChildren";
    folders_["INBOX"].uid_validity = 42;
    for (uint32_t uid = 1; uid <= 10; ++uid) {
      folders_["INBOX"].messages.push_back({uid, uid % 2 == 0, absl::StrCat(uid, "-Nov-2026 10:00:00 +0100"),
                                            "Fri, 27 Nov 2026 09:30:00 -0500 (EST)", absl::StrCat("message ", uid),
                                            absl::StrCat("Subject: message ", uid, "\r\n\r\nbody ", uid, "\r\n")});
    }
    folders_["Sent Items"].attributes = "\\HasNoChildren \\SENT";
    folders_["Archive"].attributes = "\\HasNoChildren \\Archive";
    session_ = *ImapSession::OpenOver(std::make_unique<ModelServer>(folders_, commands_), ImapServer{"model"});
  }

  std::vector<uint32_t> Uids(const MailSearchResult& result) {
    std::vector<uint32_t> uids;
    for (const MailSummary& m : result.messages) uids.push_back(m.uid);
    return uids;
  }
  bool SentAFetch() {
    for (const std::string& c : commands_) {
      if (absl::StartsWith(c, "UID FETCH")) return true;
    }
    return false;
  }

  std::map<std::string, ModelFolder> folders_;
  std::vector<std::string> commands_;
  std::unique_ptr<ImapSession> session_;
};

TEST_F(MailboxTest, FoldersCarryTheirSpecialUseAsTheServerSpelledIt) {
  absl::StatusOr<std::vector<MailFolder>> folders = Mailbox(*session_).Folders();
  ASSERT_TRUE(folders.ok()) << folders.status();
  std::map<std::string, std::string> special;
  for (const MailFolder& f : *folders) special[f.name] = f.special_use;
  EXPECT_EQ(special["INBOX"], "");
  EXPECT_EQ(special["Sent Items"], "\\SENT");
  EXPECT_EQ(special["Archive"], "\\Archive");
}

TEST_F(MailboxTest, StatusCountsAndAMissingFolderIsNamed) {
  absl::StatusOr<MailFolderStatus> status = Mailbox(*session_).Status("INBOX");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->messages, 10u);
  EXPECT_EQ(status->unseen, 5u);
  EXPECT_EQ(status->uid_next, 11u);
  EXPECT_EQ(status->uid_validity, 42u);

  absl::StatusOr<MailFolderStatus> missing = Mailbox(*session_).Status("Nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("folder \"Nope\""));
}

TEST_F(MailboxTest, SearchKeepsTheNewestFirstUpToTheLimitWhateverOrderTheServerAnswersIn) {
  MailQuery query;
  query.limit = 3;
  absl::StatusOr<MailSearchResult> result = Mailbox(*session_).Search("INBOX", query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total_matches, 10u);
  EXPECT_EQ(result->uid_validity, 42u);
  EXPECT_THAT(Uids(*result), ElementsAre(10, 9, 8));
  EXPECT_THAT(commands_.back(), HasSubstr("UID FETCH 10,9,8 "));  // only the summaries returned are fetched

  query.oldest_first = true;
  result = Mailbox(*session_).Search("INBOX", query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Uids(*result), ElementsAre(1, 2, 3));

  query = MailQuery();
  query.unseen_only = true;
  result = Mailbox(*session_).Search("INBOX", query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total_matches, 5u);
  EXPECT_THAT(Uids(*result), ElementsAre(9, 7, 5, 3, 1));  // the default limit (100) keeps them all
}

TEST_F(MailboxTest, SummariesCarryParsedTimesAndAddresses) {
  MailQuery query;
  query.limit = 1;
  absl::StatusOr<MailSearchResult> result = Mailbox(*session_).Search("INBOX", query);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->messages.size(), 1u);
  const MailSummary& m = result->messages[0];
  EXPECT_EQ(m.subject, "message 10");
  ASSERT_EQ(m.from.size(), 1u);
  EXPECT_EQ(m.from[0].name, "Bob");
  EXPECT_EQ(m.from[0].email, "bob@example.org");
  EXPECT_EQ(m.message_id, "<m10@example.org>");
  ASSERT_TRUE(m.internal_date.has_value());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *m.internal_date, absl::UTCTimeZone()), "2026-11-10T09:00:00Z");
  ASSERT_TRUE(m.date.has_value());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *m.date, absl::UTCTimeZone()), "2026-11-27T14:30:00Z");
}

TEST_F(MailboxTest, AnEmptySearchFetchesNothing) {
  folders_["Archive"].uid_validity = 7;
  absl::StatusOr<MailSearchResult> result = Mailbox(*session_).Search("Archive", MailQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total_matches, 0u);
  EXPECT_EQ(result->uid_validity, 7u);
  EXPECT_FALSE(SentAFetch());
}

TEST_F(MailboxTest, QueriesTheServerCannotBeSentAreRefusedNamingTheField) {
  MailQuery query;
  query.limit = Mailbox::kMaxSearchLimit + 1;
  EXPECT_THAT(ValidateQuery(query).message(), HasSubstr("limit: at most 1000"));
  query = MailQuery();
  query.uid_min = 9;
  query.uid_max = 3;
  EXPECT_THAT(ValidateQuery(query).message(), HasSubstr("criteria.uid_max"));
  query = MailQuery();
  query.subject = "two\r\nlines";
  EXPECT_EQ(ValidateQuery(query).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ValidateQuery(query).message(), HasSubstr("subject"));
  EXPECT_EQ(Mailbox(*session_).Search("INBOX", query).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(commands_.empty());  // nothing reached the server
}

TEST_F(MailboxTest, AFetchUnderAnotherUidValidityIsRefusedBeforeAnyByte) {
  bool started = false;
  absl::Status status = Mailbox(*session_).Fetch(
      "INBOX", 41, 3, "", 4096,
      [&](const MailFetchStart&) {
        started = true;
        return absl::OkStatus();
      },
      [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("UIDVALIDITY 42, not 41"));
  EXPECT_FALSE(started);
  EXPECT_FALSE(SentAFetch());
}

TEST_F(MailboxTest, AFetchStreamsTheBytesAfterItsMetadata) {
  for (uint32_t validity : {0u, 42u}) {
    std::vector<MailFetchStart> starts;
    std::string bytes;
    absl::Status status = Mailbox(*session_).Fetch(
        "INBOX", validity, 3, "", 4096,
        [&](const MailFetchStart& start) {
          EXPECT_TRUE(bytes.empty());
          starts.push_back(start);
          return absl::OkStatus();
        },
        [&](absl::string_view chunk) {
          bytes.append(chunk.data(), chunk.size());
          return absl::OkStatus();
        });
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(starts.size(), 1u);
    EXPECT_EQ(starts[0].uid, 3u);
    EXPECT_EQ(starts[0].uid_validity, 42u);
    EXPECT_EQ(starts[0].size, bytes.size());
    ASSERT_TRUE(starts[0].internal_date.has_value());
    EXPECT_EQ(bytes, "Subject: message 3\r\n\r\nbody 3\r\n");
  }
}

TEST_F(MailboxTest, FetchManySkipsMissingUidsAndCountsTheOthers) {
  std::vector<uint32_t> started;
  absl::StatusOr<uint64_t> fetched = Mailbox(*session_).FetchMany(
      "INBOX", 42, {2, 99, 4}, "", 4096,
      [&](const MailFetchStart& start) {
        started.push_back(start.uid);
        return absl::OkStatus();
      },
      [](absl::string_view) { return absl::OkStatus(); });
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(*fetched, 2u);
  EXPECT_THAT(started, ::testing::UnorderedElementsAre(2, 4));
}

TEST(MailDatesTest, ImapDateTimesAndDateHeadersParseToTheSameInstant) {
  const absl::Time want = absl::FromCivil(absl::CivilSecond(2026, 11, 7, 14, 30, 0), absl::UTCTimeZone());
  EXPECT_EQ(ParseImapDateTime(" 7-Nov-2026 09:30:00 -0500"), want);
  EXPECT_EQ(ParseImapDateTime("07-nov-2026 15:30:00 +0100"), want);
  EXPECT_EQ(ParseMailDate("Sat, 7 Nov 2026 14:30:00 +0000 (UTC)"), want);
  EXPECT_EQ(ParseMailDate("7 Nov 2026 14:30:00 +0000"), want);
  EXPECT_EQ(ParseMailDate("Sat, 07 Nov 2026 15:30 +0100"), want);
  EXPECT_FALSE(ParseImapDateTime("7-Foo-2026 09:30:00 -0500").has_value());
  EXPECT_FALSE(ParseImapDateTime("7-Nov-2026 25:30:00 -0500").has_value());
  EXPECT_FALSE(ParseImapDateTime("").has_value());
  EXPECT_FALSE(ParseMailDate("yesterday").has_value());
}

}  // namespace
}  // namespace tokenbroker
