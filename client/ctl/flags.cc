#include "client/ctl/flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tokenbroker::ctl {

void FlagSet::String(const std::string& name, std::string* target, const std::string& value_name,
                     const std::string& help) {
  flags_.push_back({name, Kind::kString, target, value_name, help});
}

void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  flags_.push_back({name, Kind::kBool, target, "", help});
}

void FlagSet::Duration(const std::string& name, absl::Duration* target, const std::string& help) {
  flags_.push_back({name, Kind::kDuration, target, "DURATION", help});
}

void FlagSet::Int(const std::string& name, int* target, const std::string& value_name, const std::string& help) {
  flags_.push_back({name, Kind::kInt, target, value_name, help});
}

void FlagSet::StringList(const std::string& name, std::vector<std::string>* target, const std::string& value_name,
                         const std::string& help) {
  flags_.push_back({name, Kind::kStringList, target, value_name, help + " (repeatable)"});
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Set(const Flag& flag, const std::string& value) const {
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.target) = value;
      return absl::OkStatus();
    case Kind::kBool:
      if (value == "true" || value == "1") {
        *static_cast<bool*>(flag.target) = true;
      } else if (value == "false" || value == "0") {
        *static_cast<bool*>(flag.target) = false;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", flag.name, ": expected true or false, not \"", value, "\""));
      }
      return absl::OkStatus();
    case Kind::kDuration: {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag.name, ": expected a duration such as 10s or 5m, not \"", value, "\""));
      }
      *static_cast<absl::Duration*>(flag.target) = d;
      return absl::OkStatus();
    }
    case Kind::kStringList:
      static_cast<std::vector<std::string>*>(flag.target)->push_back(value);
      return absl::OkStatus();
    case Kind::kInt: {
      int v;
      if (!absl::SimpleAtoi(value, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--", flag.name, ": expected a number, not \"", value, "\""));
      }
      *static_cast<int*>(flag.target) = v;
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown flag kind");
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args, bool stop_at_positional,
                            std::vector<std::string>* rest) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (arg == "--") {
      rest->insert(rest->end(), args.begin() + static_cast<long>(i) + 1, args.end());
      return absl::OkStatus();
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      if (stop_at_positional) {
        rest->insert(rest->end(), args.begin() + static_cast<long>(i), args.end());
        return absl::OkStatus();
      }
      rest->push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = Find(name);
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (!has_value) {
      if (flag->kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value (", flag->value_name, ")"));
      }
    }
    absl::Status s = Set(*flag, value);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string FlagSet::Help() const {
  std::string out;
  for (const Flag& f : flags_) {
    std::string left = absl::StrCat("--", f.name, f.value_name.empty() ? "" : " ", f.value_name);
    absl::StrAppendFormat(&out, "  %-24s %s\n", left, f.help);
  }
  return out;
}

}  // namespace tokenbroker::ctl
