#include "service/config/yaml_proto.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "tokenbroker/config/v1/config.pb.h"

namespace tokenbroker {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

class Converter {
 public:
  explicit Converter(absl::string_view source) : source_(source) {}

  absl::Status Error(const YAML::Mark& mark, absl::string_view path, absl::string_view what) const {
    std::string where = source_;
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", path, ": ", what));
  }

  absl::Status FillMessage(const YAML::Node& node, Message* msg, const std::string& path) {
    const Descriptor* desc = msg->GetDescriptor();
    if (desc->full_name() == "google.protobuf.Duration") return FillDuration(node, msg, path);
    if (node.IsNull()) return CheckRequired(node, *desc, {}, path);
    if (!node.IsMap()) return Error(node.Mark(), path, "expected a mapping of keys to values");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return Error(kv.first.Mark(), path, "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const std::string key_path = path.empty() ? key : absl::StrCat(path, ".", key);
      const FieldDescriptor* field = desc->FindFieldByName(key);
      if (field == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < desc->field_count(); ++i) names.push_back(desc->field(i)->name());
        return Error(kv.first.Mark(), key_path,
                     absl::StrCat("unknown key; expected one of: ", absl::StrJoin(names, ", ")));
      }
      if (!seen.insert(key).second) return Error(kv.first.Mark(), key_path, "duplicate key");
      if (const auto* oneof = field->real_containing_oneof()) {
        for (int i = 0; i < oneof->field_count(); ++i) {
          const FieldDescriptor* other = oneof->field(i);
          if (other != field && seen.count(other->name())) {
            std::vector<std::string> names;
            for (int j = 0; j < oneof->field_count(); ++j) names.push_back(oneof->field(j)->name());
            return Error(kv.first.Mark(), key_path,
                         absl::StrCat("only one of ", absl::StrJoin(names, ", "), " may be set"));
          }
        }
      }
      absl::Status s = FillField(kv.second, msg, field, key_path);
      if (!s.ok()) return s;
    }
    return CheckRequired(node, *desc, seen, path);
  }

 private:
  absl::Status CheckRequired(const YAML::Node& node, const Descriptor& desc, const std::set<std::string>& seen,
                             const std::string& path) const {
    for (int i = 0; i < desc.field_count(); ++i) {
      const FieldDescriptor* f = desc.field(i);
      if (f->options().GetExtension(config::v1::required) && !seen.count(f->name())) {
        return Error(node.Mark(), path.empty() ? f->name() : absl::StrCat(path, ".", f->name()),
                     "missing required key");
      }
    }
    return absl::OkStatus();
  }

  absl::Status FillDuration(const YAML::Node& node, Message* msg, const std::string& path) const {
    absl::Duration d;
    if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &d) || d < absl::ZeroDuration() ||
        d == absl::InfiniteDuration()) {
      return Error(node.Mark(), path, "expected a non-negative duration such as \"30s\", \"5m\" or \"1h30m\"");
    }
    auto* duration = static_cast<google::protobuf::Duration*>(msg);
    const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
    duration->set_seconds(seconds);
    duration->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
    return absl::OkStatus();
  }

  absl::Status FillField(const YAML::Node& node, Message* msg, const FieldDescriptor* field,
                         const std::string& path) {
    const Reflection* refl = msg->GetReflection();
    if (field->is_map()) {
      if (node.IsNull()) return absl::OkStatus();
      if (!node.IsMap()) return Error(node.Mark(), path, "expected a mapping");
      const FieldDescriptor* key_field = field->message_type()->map_key();
      const FieldDescriptor* value_field = field->message_type()->map_value();
      for (const auto& kv : node) {
        Message* entry = refl->AddMessage(msg, field);
        const std::string entry_path = absl::StrCat(path, ".", kv.first.IsScalar() ? kv.first.Scalar() : "?");
        absl::Status s = SetScalar(kv.first, entry, key_field, entry_path);
        if (s.ok()) s = SetValue(kv.second, entry, value_field, entry_path);
        if (!s.ok()) return s;
      }
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      if (node.IsNull()) return absl::OkStatus();
      if (!node.IsSequence()) return Error(node.Mark(), path, "expected a list");
      for (size_t i = 0; i < node.size(); ++i) {
        absl::Status s = AddRepeated(node[i], msg, field, absl::StrCat(path, "[", i, "]"));
        if (!s.ok()) return s;
      }
      return absl::OkStatus();
    }
    return SetValue(node, msg, field, path);
  }

  absl::Status SetValue(const YAML::Node& node, Message* msg, const FieldDescriptor* field, const std::string& path) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return FillMessage(node, msg->GetReflection()->MutableMessage(msg, field), path);
    }
    return SetScalar(node, msg, field, path);
  }

  absl::Status AddRepeated(const YAML::Node& node, Message* msg, const FieldDescriptor* field,
                           const std::string& path) {
    const Reflection* refl = msg->GetReflection();
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return FillMessage(node, refl->AddMessage(msg, field), path);
    }
    // Parse into a scratch message's singular twin is not possible generically;
    // repeated scalars in the schema are strings only.
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
      return Error(node.Mark(), path, "internal: unsupported repeated scalar type");
    }
    if (!node.IsScalar()) return Error(node.Mark(), path, "expected a string");
    refl->AddString(msg, field, node.Scalar());
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status ParseInteger(const YAML::Node& node, const std::string& path, T* out) const {
    constexpr T lo = std::numeric_limits<T>::min();
    constexpr T hi = std::numeric_limits<T>::max();
    const std::string expected = absl::StrCat("expected an integer from ", lo, " to ", hi);
    if (!node.IsScalar()) return Error(node.Mark(), path, expected);
    if constexpr (std::is_signed_v<T>) {
      int64_t v;
      if (!absl::SimpleAtoi(node.Scalar(), &v) || v < lo || v > hi) return Error(node.Mark(), path, expected);
      *out = static_cast<T>(v);
    } else {
      uint64_t v;
      if (!absl::SimpleAtoi(node.Scalar(), &v) || v > hi) return Error(node.Mark(), path, expected);
      *out = static_cast<T>(v);
    }
    return absl::OkStatus();
  }

  absl::Status SetScalar(const YAML::Node& node, Message* msg, const FieldDescriptor* field,
                         const std::string& path) const {
    const Reflection* refl = msg->GetReflection();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        if (!node.IsScalar()) return Error(node.Mark(), path, "expected a string");
        refl->SetString(msg, field, node.Scalar());
        return absl::OkStatus();
      case FieldDescriptor::CPPTYPE_BOOL: {
        std::string v = node.IsScalar() ? absl::AsciiStrToLower(node.Scalar()) : "";
        if (v != "true" && v != "false") return Error(node.Mark(), path, "expected true or false");
        refl->SetBool(msg, field, v == "true");
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32: {
        int32_t v = 0;
        absl::Status s = ParseInteger(node, path, &v);
        if (s.ok()) refl->SetInt32(msg, field, v);
        return s;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        absl::Status s = ParseInteger(node, path, &v);
        if (s.ok()) refl->SetInt64(msg, field, v);
        return s;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v = 0;
        absl::Status s = ParseInteger(node, path, &v);
        if (s.ok()) refl->SetUInt32(msg, field, v);
        return s;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v = 0;
        absl::Status s = ParseInteger(node, path, &v);
        if (s.ok()) refl->SetUInt64(msg, field, v);
        return s;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &v)) {
          return Error(node.Mark(), path, "expected a number");
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
          refl->SetDouble(msg, field, v);
        } else {
          refl->SetFloat(msg, field, static_cast<float>(v));
        }
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM:
        return SetEnum(node, msg, field, path);
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return Error(node.Mark(), path, "internal: unsupported field type");
  }

  // Enum values are written without their prefix: LEVEL_INFO is "info".
  static std::string ShortEnumName(const EnumDescriptor& e, int index) {
    std::string name = e.value(index)->name();
    // The prefix is what all value names share up to the last '_' of the first
    // value (LEVEL_UNSPECIFIED -> LEVEL_).
    std::string first = e.value(0)->name();
    size_t cut = first.rfind('_');
    if (cut != std::string::npos && name.compare(0, cut + 1, first, 0, cut + 1) == 0) name = name.substr(cut + 1);
    return absl::AsciiStrToLower(name);
  }

  absl::Status SetEnum(const YAML::Node& node, Message* msg, const FieldDescriptor* field,
                       const std::string& path) const {
    const EnumDescriptor& e = *field->enum_type();
    std::vector<std::string> allowed;
    for (int i = 0; i < e.value_count(); ++i) {
      if (e.value(i)->number() == 0) continue;  // UNSPECIFIED is the absence of a value
      std::string short_name = ShortEnumName(e, i);
      if (node.IsScalar() && absl::AsciiStrToLower(node.Scalar()) == short_name) {
        msg->GetReflection()->SetEnumValue(msg, field, e.value(i)->number());
        return absl::OkStatus();
      }
      allowed.push_back(short_name);
    }
    return Error(node.Mark(), path, absl::StrCat("expected one of: ", absl::StrJoin(allowed, ", ")));
  }

  std::string source_;
};

}  // namespace

absl::Status YamlToProto(absl::string_view yaml, absl::string_view source_name, Message* message) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    std::string where(source_name);
    if (!e.mark.is_null()) absl::StrAppend(&where, ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": not valid YAML: ", e.msg));
  }
  Converter converter(source_name);
  if (!root.IsDefined() || root.IsNull()) {
    return converter.Error(YAML::Mark::null_mark(), "", "the file is empty; expected a mapping of keys to values");
  }
  try {
    return converter.FillMessage(root, message, "");
  } catch (const YAML::Exception& e) {
    return converter.Error(e.mark, "", absl::StrCat("not valid YAML: ", e.msg));
  }
}

}  // namespace tokenbroker
