#include "service/common/json.h"

#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "service/common/secret.h"

namespace tokenbroker {

void AppendJsonEscaped(std::string& out, absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            absl::StrAppendFormat(&out, "\\u%04x", c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Validate one UTF-8 sequence; copy it through or replace it.
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool valid = len != 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (valid) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  AppendJsonEscaped(out, s);
  out += '"';
  return out;
}

const google::protobuf::Value* JsonField(const google::protobuf::Struct& json, const char* name) {
  auto it = json.fields().find(name);
  return it == json.fields().end() ? nullptr : &it->second;
}

std::string JsonString(const google::protobuf::Struct& json, const char* name) {
  const google::protobuf::Value* v = JsonField(json, name);
  return v != nullptr && v->has_string_value() ? v->string_value() : std::string();
}

bool JsonSeconds(const google::protobuf::Struct& json, const char* name, double* out) {
  const google::protobuf::Value* v = JsonField(json, name);
  if (v == nullptr) return false;
  if (v->has_number_value()) {
    *out = v->number_value();
  } else if (!v->has_string_value() || !absl::SimpleAtod(v->string_value(), out)) {
    return false;
  }
  return std::isfinite(*out);
}

int64_t JsonInteger(double number) {
  if (std::isnan(number)) return 0;
  // 2^63 is the first double past int64's range; every double below it converts.
  constexpr double kLimit = 9223372036854775808.0;
  if (number >= kLimit) return std::numeric_limits<int64_t>::max();
  if (number < -kLimit) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(number);
}

absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view text, absl::string_view what) {
  google::protobuf::Struct json;
  if (!google::protobuf::util::JsonStringToMessage(std::string(text), &json).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  }
  return json;
}

void WipeJsonStrings(google::protobuf::Struct& json) {
  for (auto& [name, value] : *json.mutable_fields()) {
    if (value.has_string_value()) WipeString(*value.mutable_string_value());
  }
}

}  // namespace tokenbroker
