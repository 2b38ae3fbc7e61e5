// A small flag parser for tokenbrokerctl: `--name value`, `--name=value`,
// boolean `--name`, and positional arguments. Not thread-safe.
#ifndef TOKENBROKER_CLIENT_CTL_FLAGS_H_
#define TOKENBROKER_CLIENT_CTL_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tokenbroker::ctl {

class FlagSet {
 public:
  void String(const std::string& name, std::string* target, const std::string& value_name, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  void Duration(const std::string& name, absl::Duration* target, const std::string& help);
  void Int(const std::string& name, int* target, const std::string& value_name, const std::string& help);
  // May be given more than once; each value is appended.
  void StringList(const std::string& name, std::vector<std::string>* target, const std::string& value_name,
                  const std::string& help);

  // Parses `args`. With `stop_at_positional`, parsing ends at the first
  // positional argument and it and everything after it go to `rest`;
  // otherwise flags and positionals may mix and `rest` gets the positionals.
  // "--help"/"-h" sets help_requested() instead of failing. An unknown flag or
  // a bad value is INVALID_ARGUMENT naming the flag.
  absl::Status Parse(const std::vector<std::string>& args, bool stop_at_positional, std::vector<std::string>* rest);

  bool help_requested() const { return help_requested_; }
  // One line per flag, for --help.
  std::string Help() const;

 private:
  enum class Kind { kString, kBool, kDuration, kInt, kStringList };
  struct Flag {
    std::string name;
    Kind kind;
    void* target;
    std::string value_name;
    std::string help;
  };
  const Flag* Find(const std::string& name) const;
  absl::Status Set(const Flag& flag, const std::string& value) const;

  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

}  // namespace tokenbroker::ctl

#endif  // TOKENBROKER_CLIENT_CTL_FLAGS_H_
