#include "service/imap/imap_parser.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(absl::string_view in) : in_(in) {}

  absl::StatusOr<ImapResponse> Response() {
    ImapResponse r;
    if (Consume("+")) {
      r.type = ImapResponse::Type::kContinuation;
      if (Peek() == ' ') ++pos_;
      r.text = std::string(RestOfLine());
      return Finish(r);
    }
    if (Consume("*")) {
      r.type = ImapResponse::Type::kUntagged;
    } else {
      r.type = ImapResponse::Type::kTagged;
      r.tag = std::string(Token());
      if (r.tag.empty()) return Error("expected a tag, * or +");
    }
    if (!Consume(" ")) return Error("expected a space after the tag");
    if (r.type == ImapResponse::Type::kUntagged && absl::ascii_isdigit(static_cast<unsigned char>(Peek()))) {
      absl::string_view digits = Token();
      uint32_t n = 0;
      if (!absl::SimpleAtoi(digits, &n)) return Error("bad message number");
      r.number = n;
      if (!Consume(" ")) return Error("expected a space after the number");
    }
    std::string word = absl::AsciiStrToUpper(Token());
    if (word.empty()) return Error("expected a response name");
    const bool is_status = word == "OK" || word == "NO" || word == "BAD" || word == "PREAUTH" || word == "BYE";
    if (is_status && !r.number.has_value()) {
      r.status = word;
      if (Consume(" ")) {
        if (Peek() == '[') {
          ++pos_;
          absl::Status code = Code(r);
          if (!code.ok()) return code;
          if (Peek() == ' ') ++pos_;
        }
        r.text = std::string(RestOfLine());
      }
      return Finish(r);
    }
    if (r.type == ImapResponse::Type::kTagged) return Error("a tagged response must be OK, NO or BAD");
    r.name = word;
    while (Consume(" ")) {
      if (AtLineEnd()) break;  // a trailing space, as some servers send
      absl::StatusOr<ImapValue> v = Value(0, false);
      if (!v.ok()) return v.status();
      r.values.push_back(*std::move(v));
    }
    return Finish(r);
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("IMAP response: ", what, " at byte ", pos_));
  }
  char Peek() const { return pos_ < in_.size() ? in_[pos_] : '\0'; }
  bool Consume(absl::string_view s) {
    if (in_.substr(pos_, s.size()) != s) return false;
    pos_ += s.size();
    return true;
  }
  bool AtLineEnd() const { return in_.substr(pos_, 2) == "\r\n"; }

  absl::StatusOr<ImapResponse> Finish(ImapResponse& r) {
    if (!Consume("\r\n")) return Error("expected CRLF");
    if (pos_ != in_.size()) return Error("bytes after the end of the response");
    return std::move(r);
  }

  // Up to the next space or CRLF.
  absl::string_view Token() {
    const size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] != ' ' && in_[pos_] != '\r' && in_[pos_] != '\n' && in_[pos_] != '[') {
      ++pos_;
    }
    return in_.substr(start, pos_ - start);
  }

  absl::string_view RestOfLine() {
    const size_t start = pos_;
    const size_t end = in_.find("\r\n", pos_);
    pos_ = end == absl::string_view::npos ? in_.size() : end;
    return in_.substr(start, pos_ - start);
  }

  absl::Status Code(ImapResponse& r) {
    const size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] != ' ' && in_[pos_] != ']' && in_[pos_] != '\r') ++pos_;
    r.code = absl::AsciiStrToUpper(in_.substr(start, pos_ - start));
    if (r.code.empty()) return Error("empty response code");
    while (Consume(" ")) {
      absl::StatusOr<ImapValue> v = Value(0, true);
      if (!v.ok()) return v.status();
      r.code_args.push_back(*std::move(v));
    }
    if (!Consume("]")) return Error("expected ] after the response code");
    return absl::OkStatus();
  }

  static bool AtomChar(char c, bool in_code) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
    if (c == '(' || c == ')' || c == '{' || c == '"') return false;
    if (in_code && c == ']') return false;
    return true;
  }

  absl::StatusOr<ImapValue> Value(int depth, bool in_code) {
    if (depth > kMaxDepth) return Error("lists nested too deeply");
    ImapValue v;
    const char c = Peek();
    if (c == '(') {
      ++pos_;
      v.kind = ImapValue::Kind::kList;
      bool first = true;
      while (Peek() != ')') {
        // Body parts of a multipart BODYSTRUCTURE follow each other without
        // a space (RFC 3501: 1*body).
        if (!first && !Consume(" ") &&
            !(Peek() == '(' && !v.list.empty() && v.list.back().kind == ImapValue::Kind::kList)) {
          return Error("expected a space or ) in a list");
        }
        first = false;
        if (Peek() == ')') break;  // "(a )"
        absl::StatusOr<ImapValue> item = Value(depth + 1, in_code);
        if (!item.ok()) return item.status();
        v.list.push_back(*std::move(item));
      }
      ++pos_;
      return v;
    }
    if (c == '"') {
      ++pos_;
      v.kind = ImapValue::Kind::kString;
      while (true) {
        if (pos_ >= in_.size()) return Error("unterminated quoted string");
        const char q = in_[pos_++];
        if (q == '"') break;
        if (q == '\r' || q == '\n') return Error("CR or LF in a quoted string");
        if (q == '\\') {
          if (pos_ >= in_.size()) return Error("unterminated quoted string");
          v.text += in_[pos_++];
        } else {
          v.text += q;
        }
      }
      return v;
    }
    if (c == '{' || (c == '~' && in_.substr(pos_ + 1, 1) == "{")) {  // literal (or RFC 3516 literal8)
      pos_ += c == '~' ? 2 : 1;
      const size_t start = pos_;
      while (absl::ascii_isdigit(static_cast<unsigned char>(Peek()))) ++pos_;
      uint64_t n = 0;
      if (pos_ == start || pos_ - start > 18 || !absl::SimpleAtoi(in_.substr(start, pos_ - start), &n)) {
        return Error("bad literal length");
      }
      Consume("+");
      if (!Consume("}\r\n")) return Error("expected }CRLF after the literal length");
      if (n > in_.size() - pos_) return Error("literal longer than the response");
      v.kind = ImapValue::Kind::kString;
      v.text = std::string(in_.substr(pos_, n));
      v.size = n;
      pos_ += n;
      return v;
    }
    // An atom; a section in brackets may hold spaces and lists
    // (BODY[HEADER.FIELDS (FROM TO)]), then a partial <origin.size>.
    const size_t start = pos_;
    while (pos_ < in_.size()) {
      const char a = in_[pos_];
      if (a == '[' && !in_code) {
        const size_t close = in_.find(']', pos_);
        const size_t eol = in_.find("\r\n", pos_);
        if (close == absl::string_view::npos || close > eol) return Error("unterminated [ in an atom");
        pos_ = close + 1;
        continue;
      }
      if (!AtomChar(a, in_code)) break;
      ++pos_;
    }
    if (pos_ == start) return Error(absl::StrCat("unexpected character 0x", absl::Hex(static_cast<unsigned char>(c))));
    v.kind = ImapValue::Kind::kAtom;
    v.text = std::string(in_.substr(start, pos_ - start));
    if (absl::EqualsIgnoreCase(v.text, "NIL")) {
      v.kind = ImapValue::Kind::kNil;
      v.text.clear();
    }
    return v;
  }

  absl::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

bool ImapValue::IsAtom(absl::string_view name) const {
  return kind == Kind::kAtom && absl::EqualsIgnoreCase(text, name);
}

std::optional<uint64_t> ImapValue::Number() const {
  uint64_t n = 0;
  if (kind != Kind::kAtom || text.empty() || text.size() > 19) return std::nullopt;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  if (!absl::SimpleAtoi(text, &n)) return std::nullopt;
  return n;
}

absl::StatusOr<ImapResponse> ParseImapResponse(absl::string_view raw) { return Parser(raw).Response(); }

std::vector<std::pair<std::string, const ImapValue*>> FetchAttributes(const ImapResponse& response) {
  std::vector<std::pair<std::string, const ImapValue*>> out;
  if (response.name != "FETCH" || response.values.size() != 1 ||
      response.values[0].kind != ImapValue::Kind::kList) {
    return out;
  }
  const std::vector<ImapValue>& items = response.values[0].list;
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    if (items[i].kind != ImapValue::Kind::kAtom) break;
    out.emplace_back(absl::AsciiStrToUpper(items[i].text), &items[i + 1]);
  }
  return out;
}

}  // namespace tokenbroker
