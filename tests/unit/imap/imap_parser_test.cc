#include "service/imap/imap_parser.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/imap/imap_text.h"

namespace tokenbroker {
namespace {

using ::testing::HasSubstr;

ImapResponse Parse(absl::string_view raw) {
  absl::StatusOr<ImapResponse> r = ParseImapResponse(raw);
  EXPECT_TRUE(r.ok()) << r.status() << " for " << raw;
  return r.ok() ? *r : ImapResponse{};
}

TEST(ImapParserTest, TaggedStatusWithResponseCode) {
  ImapResponse r = Parse("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(r.type, ImapResponse::Type::kTagged);
  EXPECT_EQ(r.tag, "a1");
  EXPECT_EQ(r.status, "NO");
  EXPECT_EQ(r.code, "AUTHENTICATIONFAILED");
  EXPECT_EQ(r.text, "Authentication failed.");
  EXPECT_EQ(Parse("a2 no [UNAVAILABLE] Temporary failure\r\n").code, "UNAVAILABLE");
  EXPECT_EQ(Parse("a3 OK [LIMIT] too much\r\n").code, "LIMIT");
}

TEST(ImapParserTest, UntaggedCodesWithArguments) {
  ImapResponse r = Parse("* OK [UIDVALIDITY 3857529045] UIDs valid\r\n");
  EXPECT_EQ(r.status, "OK");
  EXPECT_EQ(r.code, "UIDVALIDITY");
  ASSERT_EQ(r.code_args.size(), 1u);
  EXPECT_EQ(r.code_args[0].Number(), 3857529045u);
  ImapResponse flags = Parse("* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n");
  ASSERT_EQ(flags.code_args.size(), 1u);
  ASSERT_EQ(flags.code_args[0].list.size(), 3u);
  EXPECT_EQ(flags.code_args[0].list[2].text, "\\*");
  ImapResponse caps = Parse("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] Dovecot ready.\r\n");
  EXPECT_EQ(caps.code, "CAPABILITY");
  EXPECT_EQ(caps.code_args.size(), 4u);
  EXPECT_EQ(Parse("* OK [UIDNEXT 4392] Predicted next UID\r\n").code_args[0].Number(), 4392u);
}

TEST(ImapParserTest, ContinuationAndNumberedData) {
  ImapResponse c = Parse("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
  EXPECT_EQ(c.type, ImapResponse::Type::kContinuation);
  EXPECT_EQ(c.text, "eyJzdGF0dXMiOiI0MDEifQ==");
  EXPECT_EQ(Parse("+\r\n").text, "");
  ImapResponse e = Parse("* 172 EXISTS\r\n");
  EXPECT_EQ(e.number, 172u);
  EXPECT_EQ(e.name, "EXISTS");
}

TEST(ImapParserTest, ListWithQuotedAndLiteralNames) {
  ImapResponse r = Parse("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n");
  EXPECT_EQ(r.name, "LIST");
  ASSERT_EQ(r.values.size(), 3u);
  EXPECT_EQ(r.values[0].list[1].text, "\\Sent");
  EXPECT_EQ(r.values[1].text, "/");
  EXPECT_EQ(r.values[2].text, "Sent Items");
  ImapResponse lit = Parse("* LIST () \".\" {10}\r\nQuote \"me\"\r\n");
  EXPECT_EQ(lit.values[2].text, "Quote \"me\"");
  ImapResponse nil = Parse("* LIST (\\Noselect) NIL \"\"\r\n");
  EXPECT_EQ(nil.values[1].kind, ImapValue::Kind::kNil);
  ImapResponse esc = Parse("* LIST () \"/\" \"a\\\\b\\\"c\"\r\n");
  EXPECT_EQ(esc.values[2].text, "a\\b\"c");
}

TEST(ImapParserTest, FetchWithEnvelopeLiteralsAndSections) {
  // Dovecot sends 8-bit header values inside ENVELOPE as literals.
  const std::string subject = "Grüße aus Köln";
  const std::string raw =
      "* 12 FETCH (UID 4827 FLAGS (\\Seen) RFC822.SIZE 44827 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
      "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700\" {" + std::to_string(subject.size()) + "}\r\n" + subject +
      " ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL ((NIL NIL \"imap\" \"cac.washington.edu\")) "
      "NIL NIL NIL \"<B27397-0100000@cac.washington.edu>\") BODY[HEADER.FIELDS (FROM TO)] {5}\r\nab\r\nc "
      "BODY[]<0> NIL)\r\n";
  ImapResponse r = Parse(raw);
  EXPECT_EQ(r.number, 12u);
  auto attrs = FetchAttributes(r);
  ASSERT_EQ(attrs.size(), 7u);
  EXPECT_EQ(attrs[0].first, "UID");
  EXPECT_EQ(attrs[0].second->Number(), 4827u);
  EXPECT_EQ(attrs[2].second->Number(), 44827u);
  EXPECT_EQ(attrs[3].second->text, "17-Jul-1996 02:44:25 -0700");
  const ImapValue& envelope = *attrs[4].second;
  ASSERT_EQ(envelope.list.size(), 10u);
  EXPECT_EQ(envelope.list[1].text, subject);
  EXPECT_EQ(envelope.list[2].list[0].list[0].text, "Terry Gray");
  EXPECT_EQ(attrs[5].first, "BODY[HEADER.FIELDS (FROM TO)]");
  EXPECT_EQ(attrs[5].second->text, "ab\r\nc");
  EXPECT_EQ(attrs[6].first, "BODY[]<0>");
}

TEST(ImapParserTest, BodystructureIsNestedLists) {
  ImapResponse r = Parse(
      "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)"
      "(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 3000 NIL (\"attachment\" (\"filename\" "
      "\"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"xyz\") NIL NIL NIL))\r\n");
  auto attrs = FetchAttributes(r);
  ASSERT_EQ(attrs.size(), 1u);
  const ImapValue& bs = *attrs[0].second;
  ASSERT_GE(bs.list.size(), 3u);
  EXPECT_EQ(bs.list[0].list[1].text, "plain");
  EXPECT_EQ(bs.list[1].list[1].text, "pdf");
  EXPECT_EQ(bs.list[2].text, "mixed");
}

TEST(ImapParserTest, SearchStatusAndCapability) {
  ImapResponse s = Parse("* SEARCH 2 84 882\r\n");
  ASSERT_EQ(s.values.size(), 3u);
  EXPECT_EQ(s.values[2].Number(), 882u);
  EXPECT_TRUE(Parse("* SEARCH\r\n").values.empty());
  ImapResponse st = Parse("* STATUS \"Sent Items\" (MESSAGES 231 UIDNEXT 44292 UNSEEN 3 UIDVALIDITY 7)\r\n");
  EXPECT_EQ(st.values[0].text, "Sent Items");
  EXPECT_EQ(st.values[1].list.size(), 8u);
  EXPECT_EQ(Parse("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n").values[1].text, "AUTH=XOAUTH2");
}

TEST(ImapParserTest, MalformedInputIsAnErrorNeverACrash) {
  for (const char* bad : {"", "\r\n", "*", "* \r\n", "a1 FETCH x\r\n", "* LIST (\"/\" \"x\"\r\n",
                          "* 1 FETCH (BODY[] {10}\r\nabc)\r\n", "* 1 FETCH (BODY[] {99999999999999999999}\r\n)\r\n",
                          "* LIST () \"/\" \"unterminated\r\n", "* OK [UIDVALIDITY 1\r\n", "* 1 FETCH (a)\r\nextra",
                          "* SEARCH 1 2", "* 1 FETCH (BODY[1 x)\r\n"}) {
    EXPECT_FALSE(ParseImapResponse(bad).ok()) << bad;
  }
  std::string deep = "* X ";
  for (int i = 0; i < 1000; ++i) deep += "(";
  deep += "\r\n";
  EXPECT_THAT(std::string(ParseImapResponse(deep).status().message()), HasSubstr("nested too deeply"));
}

TEST(ImapTextTest, ModifiedUtf7RoundTrips) {
  // RFC 3501's example and friends.
  EXPECT_EQ(*EncodeMailboxName("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  EXPECT_EQ(DecodeMailboxName("~peter/mail/&U,BTFw-/&ZeVnLIqe-"), "~peter/mail/台北/日本語");
  EXPECT_EQ(*EncodeMailboxName("Tom & Jerry"), "Tom &- Jerry");
  EXPECT_EQ(DecodeMailboxName("Tom &- Jerry"), "Tom & Jerry");
  for (const char* name : {"Entwürfe", "Gelöschte Elemente", "Отправленные", "emoji 📬 box", "plain", "&&", "é"}) {
    EXPECT_EQ(DecodeMailboxName(*EncodeMailboxName(name)), name) << name;
  }
  EXPECT_FALSE(EncodeMailboxName("\xff\xfe").ok());
  EXPECT_EQ(DecodeMailboxName("raw UTF-8 Köln"), "raw UTF-8 Köln");
}

TEST(ImapTextTest, EncodedWordsDecodeToUtf8) {
  EXPECT_EQ(DecodeEncodedWords("=?UTF-8?B?R3LDvMOfZQ==?="), "Grüße");
  EXPECT_EQ(DecodeEncodedWords("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"),
            "André Pirard <PIRARD@vm1.ulg.ac.be>");
  // RFC 2047 section 8: whitespace between adjacent encoded words goes.
  EXPECT_EQ(DecodeEncodedWords("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?="), "ab");
  EXPECT_EQ(DecodeEncodedWords("=?ISO-8859-1?Q?a?= b"), "a b");
  EXPECT_EQ(DecodeEncodedWords("=?UTF-8?Q?hello_world?="), "hello world");
  EXPECT_EQ(DecodeEncodedWords("=?KOI8-R?B?8NLJ18XU?="), "Привет");
  EXPECT_EQ(DecodeEncodedWords("=?x-unknown?Q?abc?="), "=?x-unknown?Q?abc?=");
  EXPECT_EQ(DecodeEncodedWords("no words here"), "no words here");
  EXPECT_EQ(DecodeEncodedWords("=?UTF-8?B?broken"), "=?UTF-8?B?broken");
}

TEST(ImapTextTest, CallerStringsAreValidatedAndQuoted) {
  EXPECT_TRUE(ValidateImapString("folder", "Sent Items", 1000).ok());
  absl::Status crlf = ValidateImapString("folder", "INBOX\r\na2 DELETE INBOX", 1000);
  EXPECT_EQ(crlf.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(crlf.message(), "folder: must not contain CR, LF or NUL");
  EXPECT_FALSE(ValidateImapString("folder", std::string("a\0b", 3), 1000).ok());
  EXPECT_FALSE(ValidateImapString("folder", std::string(1001, 'a'), 1000).ok());
  EXPECT_EQ(Quote("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
  EXPECT_TRUE(NeedsLiteral("Köln"));
  EXPECT_FALSE(NeedsLiteral("Koeln"));
}

}  // namespace
}  // namespace tokenbroker
