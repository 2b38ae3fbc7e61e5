#include "service/imap/imap_text.h"

#include <iconv.h>

#include <cerrno>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tokenbroker {
namespace {

constexpr char kMBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

// UTF-8 -> code points; false on malformed input.
bool Utf8ToCodePoints(absl::string_view s, std::vector<uint32_t>& out) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    out.push_back(cp);
    i += len;
  }
  return true;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Converts `in` from `charset` to UTF-8; false when iconv cannot.
bool ToUtf8(const std::string& charset, const std::string& in, std::string& out) {
  std::string cs = absl::AsciiStrToUpper(charset);
  if (const size_t star = cs.find('*'); star != std::string::npos) cs.resize(star);  // RFC 2231 language
  if (cs == "UTF-8" || cs == "US-ASCII") {
    std::vector<uint32_t> ignored;
    if (!Utf8ToCodePoints(in, ignored)) return false;
    out = in;
    return true;
  }
  iconv_t cd = iconv_open("UTF-8", cs.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  std::string result(in.size() * 4 + 16, '\0');
  char* src = const_cast<char*>(in.data());
  size_t src_left = in.size();
  char* dst = result.data();
  size_t dst_left = result.size();
  const size_t rc = iconv(cd, &src, &src_left, &dst, &dst_left);
  iconv_close(cd);
  if (rc == static_cast<size_t>(-1)) return false;
  result.resize(result.size() - dst_left);
  out = std::move(result);
  return true;
}

}  // namespace

absl::StatusOr<std::string> EncodeMailboxName(absl::string_view utf8) {
  std::vector<uint32_t> cps;
  if (!Utf8ToCodePoints(utf8, cps)) return absl::InvalidArgumentError("folder: not valid UTF-8");
  std::string out;
  std::vector<uint16_t> pending;  // UTF-16 units waiting to be base64-encoded
  auto flush = [&] {
    if (pending.empty()) return;
    out += '&';
    uint32_t bits = 0;
    int nbits = 0;
    for (uint16_t u : pending) {
      bits = (bits << 16) | u;
      nbits += 16;
      while (nbits >= 6) {
        out += kMBase64[(bits >> (nbits - 6)) & 0x3f];
        nbits -= 6;
      }
    }
    if (nbits > 0) out += kMBase64[(bits << (6 - nbits)) & 0x3f];
    out += '-';
    pending.clear();
  };
  for (uint32_t cp : cps) {
    if (cp >= 0x20 && cp <= 0x7e) {
      flush();
      out += cp == '&' ? std::string("&-") : std::string(1, static_cast<char>(cp));
    } else if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      pending.push_back(static_cast<uint16_t>(0xd800 | (v >> 10)));
      pending.push_back(static_cast<uint16_t>(0xdc00 | (v & 0x3ff)));
    } else {
      pending.push_back(static_cast<uint16_t>(cp));
    }
  }
  flush();
  return out;
}

std::string DecodeMailboxName(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) return std::string(s);  // raw 8-bit: not modified UTF-7
    if (c != '&') {
      out += static_cast<char>(c);
      continue;
    }
    const size_t end = s.find('-', i + 1);
    if (end == absl::string_view::npos) return std::string(s);
    if (end == i + 1) {
      out += '&';
      i = end;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      const char* p = std::char_traits<char>::find(kMBase64, 64, s[k]);
      if (p == nullptr) return std::string(s);
      bits = (bits << 6) | static_cast<uint32_t>(p - kMBase64);
      nbits += 6;
      if (nbits >= 16) {
        units.push_back(static_cast<uint16_t>((bits >> (nbits - 16)) & 0xffff));
        nbits -= 16;
      }
    }
    for (size_t k = 0; k < units.size(); ++k) {
      uint32_t cp = units[k];
      if (cp >= 0xd800 && cp <= 0xdbff && k + 1 < units.size() && units[k + 1] >= 0xdc00 && units[k + 1] <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (units[k + 1] - 0xdc00);
        ++k;
      } else if (cp >= 0xd800 && cp <= 0xdfff) {
        return std::string(s);
      }
      AppendUtf8(cp, out);
    }
    i = end;
  }
  return out;
}

std::string DecodeEncodedWords(absl::string_view header) {
  std::string out;
  size_t i = 0;
  bool last_was_word = false;
  std::string pending_space;
  while (i < header.size()) {
    if (header.substr(i, 2) == "=?") {
      // =?charset?enc?text?=
      const size_t q1 = header.find('?', i + 2);
      const size_t q2 = q1 == absl::string_view::npos ? q1 : header.find('?', q1 + 1);
      const size_t end = q2 == absl::string_view::npos ? q2 : header.find("?=", q2 + 1);
      if (end != absl::string_view::npos && q2 == q1 + 2) {
        const std::string charset(header.substr(i + 2, q1 - i - 2));
        const char enc = absl::ascii_toupper(header[q1 + 1]);
        const absl::string_view text = header.substr(q2 + 1, end - q2 - 1);
        std::string raw;
        bool ok = true;
        if (enc == 'B') {
          ok = absl::Base64Unescape(text, &raw);
        } else if (enc == 'Q') {
          for (size_t k = 0; k < text.size(); ++k) {
            if (text[k] == '_') {
              raw += ' ';
            } else if (text[k] == '=' && k + 2 < text.size() &&
                       absl::ascii_isxdigit(static_cast<unsigned char>(text[k + 1])) &&
                       absl::ascii_isxdigit(static_cast<unsigned char>(text[k + 2]))) {
              raw += static_cast<char>(std::stoi(std::string(text.substr(k + 1, 2)), nullptr, 16));
              k += 2;
            } else {
              raw += text[k];
            }
          }
        } else {
          ok = false;
        }
        std::string decoded;
        if (ok && ToUtf8(charset, raw, decoded)) {
          if (!last_was_word) out += pending_space;
          pending_space.clear();
          out += decoded;
          last_was_word = true;
          i = end + 2;
          continue;
        }
      }
    }
    const char c = header[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      pending_space += c == '\r' || c == '\n' ? "" : std::string(1, c);
      ++i;
      continue;
    }
    out += pending_space;
    pending_space.clear();
    out += c;
    last_was_word = false;
    ++i;
  }
  out += pending_space;
  return out;
}

absl::Status ValidateImapString(absl::string_view field, absl::string_view value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than ", max_bytes, " bytes"));
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain CR, LF or NUL"));
    }
  }
  return absl::OkStatus();
}

bool NeedsLiteral(absl::string_view value) {
  for (char c : value) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

std::string Quote(absl::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace tokenbroker
